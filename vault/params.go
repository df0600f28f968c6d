package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/cloakroom/cloakroom/internal/ascii"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/jsonscan"
)

// maxRequestBody bounds a request body read to strip token parameters: a
// larger form, JSON or multipart body is refused, never passed on
// unchecked.
const maxRequestBody = 1 << 20

var (
	// errBadRequestBody: a body of a type the backend reads parameters
	// from that the vault cannot parse, so cannot strip.
	errBadRequestBody = errors.New("vault: request body cannot be checked for token parameters")
	// errEncodedRequestBody: a compressed body of such a type.
	errEncodedRequestBody = errors.New("vault: compressed request body cannot be checked for token parameters")
)

// bodyKind is how a backend reads parameters from a request body.
type bodyKind int

const (
	bodyOpaque    bodyKind = iota // no parameters: passed as it is
	bodyForm                      // application/x-www-form-urlencoded
	bodyJSON                      // JSON, which Rails merges into the parameters
	bodyMultipart                 // multipart/form-data and other multipart types
)

// requestBodyKind tells how a backend would read r's body. The media type
// is cut at the first ';', ',' or space, as PHP cuts it (Rack cuts at ';'
// and ','), so "application/json, x" is JSON too; two Content-Type
// headers, which backends resolve differently, are refused.
func requestBodyKind(r *http.Request) (bodyKind, error) {
	values := r.Header.Values("Content-Type")
	if len(values) > 1 {
		return bodyOpaque, fmt.Errorf("%w: more than one Content-Type", errBadRequestBody)
	}
	ct := ""
	if len(values) == 1 {
		ct = strings.TrimLeft(values[0], " \t")
	}
	if i := strings.IndexAny(ct, ";, \t"); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(ct)
	switch {
	case ct == "":
		if r.Method == http.MethodPost {
			return bodyForm, nil // Rack reads an untyped POST body as a form
		}
	case ct == "application/x-www-form-urlencoded":
		return bodyForm, nil
	case strings.HasPrefix(ct, "multipart/"):
		return bodyMultipart, nil // Rack reads multipart/mixed and related too
	case ct == "application/json" || ct == "text/json" || ct == "text/x-json" || ct == "application/jsonrequest" || strings.HasSuffix(ct, "+json"):
		return bodyJSON, nil
	}
	return bodyOpaque, nil
}

// stripParams removes the route's token parameters from the query and
// from form, JSON and multipart bodies, leaving every other byte as it
// came. A body it cannot check (too large, compressed, unparseable) is an
// error: the request must not go on.
func (rt *route) stripParams(w http.ResponseWriter, r *http.Request) error {
	if r.URL.RawQuery != "" {
		if q, changed := stripValues(r.URL.RawQuery, rt.strip); changed {
			r.URL.RawQuery = q
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	kind, err := requestBodyKind(r)
	if err != nil || kind == bodyOpaque {
		return err
	}
	if enc := r.Header.Values("Content-Encoding"); len(enc) > 1 || len(enc) == 1 && !strings.EqualFold(strings.TrimSpace(enc[0]), "identity") {
		return errEncodedRequestBody
	}
	if r.ContentLength > maxRequestBody {
		return &http.MaxBytesError{Limit: maxRequestBody}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	r.Body.Close()
	if err != nil {
		return err
	}
	body := raw
	if len(bytes.Trim(raw, " \t\r\n")) > 0 {
		switch kind {
		case bodyForm:
			if s, changed := stripValues(string(raw), rt.strip); changed {
				body = []byte(s)
			}
		case bodyJSON:
			body, err = stripJSON(raw, rt.strip)
		case bodyMultipart:
			body, err = stripMultipart(raw, r.Header.Get("Content-Type"), rt.strip)
		}
		if err != nil {
			return err
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// refuseBody answers a request whose body the vault could not check for
// token parameters; it does not reach the backend.
func (v *Vault) refuseBody(w http.ResponseWriter, r *http.Request, rt *route, err error) {
	v.log.LogAttrs(r.Context(), slog.LevelWarn, "vault: request refused", slog.String("route", rt.label),
		slog.String("path", r.URL.Path), slog.String("reason", err.Error()))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpjson.Error(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("The body is larger than %d bytes.", maxRequestBody))
	case errors.Is(err, errEncodedRequestBody):
		httpjson.Error(w, http.StatusUnsupportedMediaType, "unsupported_encoding", "A compressed body cannot be checked; send it uncompressed.")
	default:
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "The body could not be parsed.")
	}
}

// namesParam reports whether one "&"-separated part names a stripped
// parameter, also after a ";", which some backends take as a separator.
func namesParam(part string, names paramNames) bool {
	for sub := range strings.SplitSeq(part, ";") {
		name, _, _ := strings.Cut(sub, "=")
		if names.strips(name) {
			return true
		}
	}
	return false
}

// stripValues removes the named parameters from an urlencoded string,
// comparing names as backends read them (see paramNames.strips), and keeps
// every other parameter byte for byte.
func stripValues(s string, names paramNames) (string, bool) {
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

// paramNames is a route's set of stripped parameter names.
type paramNames struct {
	lower  map[string]bool // the names, ASCII lower case
	folded [][]byte        // the same, folded (see fold)
}

func newParamNames(names ...string) paramNames {
	p := paramNames{lower: map[string]bool{}}
	for _, n := range names {
		n = ascii.Lower(n)
		if !p.lower[n] {
			p.lower[n] = true
			p.folded = append(p.folded, []byte(foldName(n)))
		}
	}
	return p
}

// fold maps a byte as every reading in readsAs may: ASCII lower case,
// and ' ', '.' and '[' to '_' (PHP). A name a reading gives is a
// substring of the name it read with some bytes so mapped, so its folded
// form is a substring of the folded name read.
func fold(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == ' ' || c == '.' || c == '[':
		return '_'
	}
	return c
}

func foldName(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = fold(c)
	}
	return string(b)
}

// mayStrip is a quick test for strips, which allocates nothing for names
// of up to 128 bytes: whether the folded name, decoded or as it came,
// holds a folded stripped name at all.
func (p paramNames) mayStrip(name string) bool {
	var buf [128]byte
	for _, decode := range [...]bool{false, true} {
		folded := buf[:0]
		for i := 0; i < len(name); i++ {
			c := name[i]
			switch {
			case c == '+':
				c = ' '
			case decode && c == '%' && i+2 < len(name) && isHex(name[i+1]) && isHex(name[i+2]):
				c = unhex(name[i+1])<<4 | unhex(name[i+2])
				i += 2
			}
			folded = append(folded, fold(c))
		}
		for _, n := range p.folded {
			if bytes.Contains(folded, n) {
				return true
			}
		}
		if !strings.Contains(name, "%") {
			break // decoding changes nothing
		}
	}
	return false
}

// strips reports whether a parameter name, as it came, is one of the
// names as a common backend reads it: decoded (PHP decodes every valid
// %XX and keeps the rest; qs keeps a name it cannot decode as it came,
// '+' aside), then named as PHP, Rack or qs name it (see readsAs). A JSON
// key or a multipart name is not percent-decoded by backends; decoding it
// anyway only strips more.
func (p paramNames) strips(name string) bool {
	if !p.mayStrip(name) {
		return false
	}
	spaced := strings.ReplaceAll(name, "+", " ")
	return p.readsAs(spaced) || strings.Contains(name, "%") && p.readsAs(percentDecode(name))
}

// readsAs reports whether a decoded parameter name is one of the names
// under any of these readings, compared without regard to ASCII case:
//   - as it is, white space trimmed;
//   - PHP: the name ends at a NUL, leading spaces go, and ' ' and '.'
//     become '_' up to the first '['; a '[' with a ']' after it starts
//     an array, named by what comes before it; a '[' without one becomes
//     '_' itself, the rest kept as it is (older PHP) or with ' ', '.' and
//     '[' made '_' too (newer);
//   - Rack 2 and qs: leading '[' and ']' dropped, the name ends at the
//     next '[' or ']' (a[b], a[], a[0], [a] and [a][b] all name a);
//   - Rack 3: the name ends at the first '[' after its first byte;
//   - qs with allowDots: the name ends at the first '.' (a.b is a[b]).
func (p paramNames) readsAs(n string) bool {
	if i := strings.IndexByte(n, 0); i >= 0 {
		n = n[:i]
	}
	n = ascii.Lower(n)
	t := strings.TrimSpace(n)
	rack2 := strings.TrimLeft(t, "[]")
	if i := strings.IndexAny(rack2, "[]"); i >= 0 {
		rack2 = rack2[:i]
	}
	rack3 := t
	if i := strings.IndexByte(t[min(1, len(t)):], '['); i >= 0 {
		rack3 = t[:i+1]
	}
	dotted, _, _ := strings.Cut(t, ".")
	if p.lower[t] || p.lower[rack2] || p.lower[rack3] || p.lower[dotted] {
		return true
	}
	var buf [128]byte
	return p.lower[string(phpName(buf[:0], n, false))] || p.lower[string(phpName(buf[:0], n, true))]
}

// phpName appends to dst the name PHP registers a parameter under (see
// readsAs); newer makes ' ', '.' and '[' after an unclosed '[' into '_',
// as PHP 8 does.
func phpName(dst []byte, n string, newer bool) []byte {
	n = strings.TrimLeft(n, " ")
	for i := 0; i < len(n); i++ {
		switch c := n[i]; c {
		case ' ', '.':
			dst = append(dst, '_')
		case '[':
			rest := n[i+1:]
			if strings.IndexByte(rest, ']') >= 0 {
				return dst // an array: its base name
			}
			dst = append(dst, '_')
			for j := 0; j < len(rest); j++ {
				if c := rest[j]; newer && (c == ' ' || c == '.' || c == '[') {
					dst = append(dst, '_')
				} else {
					dst = append(dst, c)
				}
			}
			return dst
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// percentDecode decodes an urlencoded name as PHP does: '+' is a space,
// every valid %XX its byte, anything else kept as it is.
func percentDecode(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			out = append(out, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			out = append(out, hi<<4|lo)
			i += 2
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// stripJSON removes from a JSON body every object member, at any depth,
// whose key names a stripped parameter (Rails takes JSON bodies as
// parameters, and wraps them under the controller's name). A body that is
// not JSON, or nests deeper than the vault walks, is an error.
func stripJSON(body []byte, names paramNames) ([]byte, error) {
	members, err := jsonscan.Members(body, func(key []byte) bool { return names.strips(string(key)) })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadRequestBody, err)
	}
	edits := make([]edit, len(members))
	for i, m := range members {
		edits[i] = edit{start: m.Start, end: m.End, drop: true}
	}
	return applyEdits(body, edits), nil
}

// maxBoundary bounds a multipart boundary; RFC 2046 allows 70 bytes.
const maxBoundary = 200

// stripMultipart removes from a multipart body every part whose field name
// (in Content-Disposition, or Content-ID, which Rack falls back to) names
// a stripped parameter. Parsers differ on malformed bodies, so only a
// strict form is taken: the boundary alone among the Content-Type's
// parameters (a charset aside); every occurrence of the delimiter a
// delimiter line (at the start or after CRLF, then "--" or CRLF); a close
// delimiter with nothing after it but a CRLF; part headers in lines of
// their own, unfolded, with one Content-Disposition and no RFC 2231 name.
// Anything else is an error.
func stripMultipart(body []byte, contentType string, names paramNames) ([]byte, error) {
	bad := func(why string) error { return fmt.Errorf("%w: multipart: %s", errBadRequestBody, why) }
	_, params, err := mime.ParseMediaType(contentType)
	boundary := params["boundary"]
	if err != nil || boundary == "" || len(boundary) > maxBoundary || len(params) > 2 || len(params) == 2 && params["charset"] == "" ||
		strings.Count(strings.ToLower(contentType), "boundary") != 1 {
		return nil, bad("the Content-Type must carry one boundary and no other parameter but a charset")
	}
	delim := []byte("--" + boundary)
	var edits []edit
	partStart, headersAt := -1, -1 // the current part's delimiter line, and its headers
	for pos := 0; ; {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			return nil, bad("no close delimiter")
		}
		i += pos
		lineStart := i
		if i > 0 {
			if i < 2 || body[i-2] != '\r' || body[i-1] != '\n' {
				return nil, bad("a delimiter not at the start of a line")
			}
			lineStart = i - 2
		}
		j := i + len(delim)
		closing := bytes.HasPrefix(body[j:], []byte("--"))
		if closing {
			j += 2
		} else {
			for j < len(body) && (body[j] == ' ' || body[j] == '\t') {
				j++
			}
			if !bytes.HasPrefix(body[j:], []byte("\r\n")) {
				return nil, bad("a delimiter line with more on it")
			}
			j += 2
		}
		if partStart >= 0 && lineStart < headersAt {
			// "--b\r\n--b--": the line break that ends one delimiter line
			// cannot also start the next; there is no part between them.
			return nil, bad("a delimiter line right after another")
		}
		if partStart >= 0 {
			drop, err := partStripped(body[headersAt:lineStart], names)
			if err != nil {
				return nil, bad(err.Error())
			}
			if drop {
				// The part goes with its delimiter line; the first one
				// with the CRLF before the next, so the body still starts
				// with a delimiter.
				end := lineStart
				if partStart == 0 {
					end += 2
				}
				edits = append(edits, edit{start: partStart, end: end})
			}
		}
		if closing {
			if rest := body[j:]; len(rest) > 0 && !bytes.Equal(rest, []byte("\r\n")) {
				return nil, bad("more after the close delimiter")
			}
			return applyEdits(body, edits), nil
		}
		partStart, headersAt, pos = lineStart, j, j
	}
}

// partStripped reports whether a multipart part (its headers, a blank
// line, its content) carries a stripped field name.
func partStripped(part []byte, names paramNames) (bool, error) {
	if bytes.HasPrefix(part, []byte("\r\n")) {
		return false, nil // no headers
	}
	end := bytes.Index(part, []byte("\r\n\r\n"))
	if end < 0 {
		return false, errors.New("part headers without an end")
	}
	dispositions := 0
	for line := range strings.SplitSeq(string(part[:end]), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || name[0] == ' ' || name[0] == '\t' || strings.ContainsAny(line, "\r\n") {
			return false, errors.New("a malformed part header")
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimRight(name, " \t")) {
		case "content-disposition":
			dispositions++
			lower := strings.ToLower(value)
			if dispositions > 1 || strings.Contains(lower, "name*") {
				return false, errors.New("more than one Content-Disposition, or an RFC 2231 name")
			}
			_, params, err := mime.ParseMediaType(value)
			if err != nil {
				return false, errors.New("a malformed Content-Disposition")
			}
			if names.strips(params["name"]) || rawNameStripped(value, lower, names) {
				return true, nil
			}
		case "content-id":
			if names.strips(strings.Trim(value, "<>")) {
				return true, nil
			}
		}
	}
	return false, nil
}

// rawNameStripped looks at every name= in a Content-Disposition value as
// a lenient parser would, quotes taken off up to the next quote or ';',
// so that a parser reading the name differently from mime.ParseMediaType
// still finds it stripped.
func rawNameStripped(value, lower string, names paramNames) bool {
	for from := 0; ; {
		i := strings.Index(lower[from:], "name=")
		if i < 0 {
			return false
		}
		i += from
		from = i + len("name=")
		if i > 0 && ('a' <= lower[i-1] && lower[i-1] <= 'z') {
			continue // filename=
		}
		v := value[from:]
		if rest, quoted := strings.CutPrefix(v, `"`); quoted {
			v, _, _ = strings.Cut(rest, `"`)
		} else {
			v, _, _ = strings.Cut(v, ";")
		}
		if names.strips(strings.TrimSpace(v)) {
			return true
		}
	}
}
