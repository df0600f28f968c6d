package gateway

import (
	"bytes"
	"context"
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
			if isNavigation(r) {
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
		return badInput(status, "The body is larger than %d bytes.", b.limit(r.URL.Path))
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
