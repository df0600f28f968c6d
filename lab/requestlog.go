package lab

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// maxLoggedRequests bounds the request log of each app.
const maxLoggedRequests = 1000

// loggedRequest is what the lab notes about one request to an app: enough
// to tell afterwards how a forged request was answered, since the forging
// page itself cannot read the answer.
type loggedRequest struct {
	At           time.Time
	Method, Path string
	Status       int
	SecFetchSite string
	Origin       string
}

type requestLog struct {
	mu      sync.Mutex
	entries []loggedRequest
}

func newRequestLog() *requestLog { return &requestLog{} }

func (l *requestLog) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		l.mu.Lock()
		l.entries = append(l.entries, loggedRequest{
			At: time.Now(), Method: r.Method, Path: r.URL.Path, Status: sw.status,
			SecFetchSite: r.Header.Get("Sec-Fetch-Site"), Origin: r.Header.Get("Origin"),
		})
		if len(l.entries) > maxLoggedRequests {
			l.entries = slices.Delete(l.entries, 0, len(l.entries)-maxLoggedRequests)
		}
		l.mu.Unlock()
	})
}

func (l *requestLog) snapshot() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.entries)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
