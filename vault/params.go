package vault

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxFormBody bounds a form body read to strip token fields.
const maxFormBody = 1 << 20

// stripParams removes the route's token parameters from the query and
// from an urlencoded form body.
func (rt *route) stripParams(w http.ResponseWriter, r *http.Request) error {
	if r.URL.RawQuery != "" {
		if q, changed := stripValues(r.URL.RawQuery, rt.strip); changed {
			r.URL.RawQuery = q
		}
	}
	if !strings.EqualFold(mediaType(r.Header.Get("Content-Type")), "application/x-www-form-urlencoded") || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBody))
	r.Body.Close()
	if err != nil {
		return err
	}
	body, _ := stripValues(string(raw), rt.strip)
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// namesParam reports whether one "&"-separated part names a stripped
// parameter, also after a ";", which some backends take as a separator.
func namesParam(part string, names map[string]bool) bool {
	for sub := range strings.SplitSeq(part, ";") {
		name, _, _ := strings.Cut(sub, "=")
		if dec, err := url.QueryUnescape(name); err == nil {
			name = dec
		}
		if names[strings.ToLower(strings.TrimSpace(name))] {
			return true
		}
	}
	return false
}

// stripValues removes the named parameters from an urlencoded string,
// comparing decoded names without regard to case, and keeps every other
// parameter byte for byte.
func stripValues(s string, names map[string]bool) (string, bool) {
	var kept []string
	changed := false
	for part := range strings.SplitSeq(s, "&") {
		if namesParam(part, names) {
			changed = true
			continue
		}
		kept = append(kept, part)
	}
	if !changed {
		return s, false
	}
	return strings.Join(kept, "&"), true
}
