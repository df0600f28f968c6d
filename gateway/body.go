package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"log/slog"

	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
)

// maxAuthBody bounds the body of every request to an endpoint under the
// auth prefix. The largest legitimate one is a login form.
const maxAuthBody = maxLoginBody

// DefaultBodyReadTimeout is how long a client may take to send the body of
// a request to an auth endpoint unless Config.BodyReadTimeout says
// otherwise.
const DefaultBodyReadTimeout = 10 * time.Second

// bodyReader reads the whole body of every request to an auth endpoint;
// see wrap.
type bodyReader struct {
	auth     string
	timeout  time.Duration
	log      *slog.Logger
	clientIP func(*http.Request) string
}

// wrap reads the whole body of every request to an auth endpoint,
// at most bodyLimit bytes within Config.BodyReadTimeout, before the
// session is loaded. An endpoint therefore acts on the session as it is
// once the last byte has arrived: a request parked by a slow body cannot
// act on a session that ended meanwhile. A larger body gets 413 without
// being buffered, a slow one 408.
// It runs before the session middleware, so the client's address comes
// from clientIP, the session manager's reading of it.
func (b *bodyReader) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || !httpx.PathUnder(r.URL.Path, b.auth) {
			next.ServeHTTP(w, r)
			return
		}
		body, status := b.read(w, r)
		if status != 0 {
			// The rest of the body is never read: the connection cannot
			// be reused.
			w.Header().Set("Connection", "close")
			b.log.WarnContext(r.Context(), "request body refused", "method", r.Method, "path", r.URL.Path,
				"status", status, "client_ip", b.clientIP(r))
			refusal := b.refusal(r, status)
			if r.Method == http.MethodPost && r.URL.Path == b.auth+"/login" {
				// The login answers it in its own format and counts it
				// among failed logins.
				r = r.WithContext(context.WithValue(r.Context(), bodyRefusalKey{}, refusal))
				r.Body = http.NoBody
				next.ServeHTTP(w, r)
				return
			}
			if httpx.IsNavigation(r) {
				http.Error(w, http.StatusText(refusal.Status)+": "+refusal.Message, refusal.Status)
				return
			}
			httpjson.Error(w, refusal.Status, refusal.Code, refusal.Message)
			return
		}
		r = r.WithContext(r.Context()) // a copy: the server's request stays as it came
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

// maxLargeAuthBody bounds the two auth endpoints that take bodies larger
// than a login: browsers' CSP reports, which batch violations, and OpenID
// back-channel logouts, whose signed logout token can pass 8 KiB (refusing
// one would leave a session alive). Each endpoint applies its own limit
// within it.
const maxLargeAuthBody = 16 << 10

// limit is the most bytes a body sent to path may have.
func (b *bodyReader) limit(path string) int64 {
	if path == b.auth+"/csp-report" || strings.HasPrefix(path, b.auth+"/backchannel-logout/") {
		return maxLargeAuthBody
	}
	return maxAuthBody
}

// read reads r's body, or reports the status to refuse it with.
func (b *bodyReader) read(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	limit := b.limit(r.URL.Path)
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge // refused unread
	}
	// A per-request deadline: the server's ReadTimeout is a minute, far
	// too long to hold a request whose body is a few hundred bytes.
	rc := http.NewResponseController(w)
	deadlineSet := rc.SetReadDeadline(time.Now().Add(b.timeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if deadlineSet && err == nil {
		// The body is in; later requests on the connection get the
		// server's own deadlines.
		_ = rc.SetReadDeadline(time.Time{})
	}
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == nil:
		return body, 0
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		return nil, http.StatusRequestTimeout
	default:
		return nil, http.StatusBadRequest
	}
}

type bodyRefusalKey struct{}

// bodyRefusal returns the answer wrap refused r's body with, or nil.
func bodyRefusal(r *http.Request) *problem {
	p, _ := r.Context().Value(bodyRefusalKey{}).(*problem)
	return p
}

// refusal is the answer to a body refused with status.
func (b *bodyReader) refusal(r *http.Request, status int) *problem {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return errTooLarge(b.limit(r.URL.Path))
	case http.StatusRequestTimeout:
		return newProblem(status, "timeout", "The body was not received in time.")
	}
	return badInput(status, "The body could not be read.")
}

// formField returns a field of an application/x-www-form-urlencoded body,
// the only form encoding the gateway's endpoints take: multipart bodies are
// never parsed, so no field can come from one.
func formField(r *http.Request, name string) string {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/x-www-form-urlencoded" {
		return ""
	}
	if err := r.ParseForm(); err != nil {
		return ""
	}
	return r.PostForm.Get(name)
}

// errTooLarge is the one answer to a body over an endpoint's limit,
// whichever layer finds it.
func errTooLarge(limit int64) *problem {
	return newProblem(http.StatusRequestEntityTooLarge, "too_large", "The body is larger than %d bytes.", limit)
}

// Answers to a JSON body that is not one object with distinct keys.
const (
	msgNotJSONObject  = "The body must be a JSON object."
	msgNotSingleValue = "The body must hold a single JSON object."
)

// decodeJSONObject decodes body, one JSON object, into v strictly: no
// unknown fields, no trailing data, and no key given twice in any object
// of it. encoding/json keeps the last of two equal keys and matches keys
// in any case, while a proxy or a log reader may keep the first: a
// repeated key would let one request say two things, so it is refused, as
// a form's repeated field is.
func decodeJSONObject(body io.Reader, v any) *problem {
	raw, err := io.ReadAll(body)
	if err != nil {
		return jsonBodyError(err)
	}
	if p := checkJSONObject(raw); p != nil {
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonBodyError(err)
	}
	return nil
}

// checkJSONObject walks raw once and refuses anything but a single JSON
// object whose objects, at every depth, have distinct keys under
// encoding/json's case folding. The body is bounded (8 KiB), so comparing
// each key with its object's others stays cheap.
func checkJSONObject(raw []byte) *problem {
	type frame struct {
		object  bool
		wantKey bool     // an object's next token is a key or its end
		keys    []string // an object's keys so far
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers are checked, not converted: 1e999 is the decoder's to judge
	var stack []frame
	values := 0 // top-level values seen
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return badInput(http.StatusBadRequest, "The body is not valid JSON.")
		}
		if len(stack) == 0 {
			if values++; values > 1 {
				return badInput(http.StatusBadRequest, msgNotSingleValue)
			}
			if tok != json.Delim('{') {
				return badInput(http.StatusBadRequest, msgNotJSONObject)
			}
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey && tok != json.Delim('}') {
			top := &stack[n-1]
			key, _ := tok.(string) // the decoder only gives strings here
			for _, k := range top.keys {
				if strings.EqualFold(k, key) {
					return badInput(http.StatusBadRequest, "Field %q is given more than once.", truncateUTF8(key, 64))
				}
			}
			top.keys = append(top.keys, key)
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: its object's next token is a key.
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	if values == 0 {
		return badInput(http.StatusBadRequest, "The body is empty; send a JSON object.")
	}
	return nil
}
