package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloakroom/cloakroom/proxy"
)

// uploadStalled proxies an upload whose body sends 5 of its 10 bytes and
// then blocks, under a lifetime of l, and calls stop once the upstream has
// the request. It returns the answer the client got.
func uploadStalled(t *testing.T, l *lifetimes, stop func(s stall)) *httptest.ResponseRecorder {
	t.Helper()
	var whole atomic.Int64
	started, cut := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		if _, err := io.ReadAll(r.Body); err == nil {
			whole.Add(1)
		} else {
			close(cut)
		}
	}))
	t.Cleanup(up.Close)
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{mustRoute(t, "/api/="+up.URL)}})

	body, send := io.Pipe()
	t.Cleanup(func() { send.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/upload", body)
	req.ContentLength = 10
	rec := httptest.NewRecorder()
	served := make(chan struct{})
	go func() {
		defer close(served)
		p.Serve(rec, req, proxy.Call{Identity: proxy.Identity{User: "alice"}, Lifetime: l.lifetime})
	}()
	go io.WriteString(send, "12345") // then nothing: the client is slow
	<-started
	stop(stall{cancelRequest: cancel, body: send, cut: cut})
	<-served
	if n := whole.Load(); n != 0 {
		t.Errorf("the upstream received %d uploads whole", n)
	}
	if n, m := l.taken.Load(), l.released.Load(); n != m {
		t.Errorf("%d lifetimes taken, %d released", n, m)
	}
	return rec
}

// stall is what a test does to a stalled upload.
type stall struct {
	cancelRequest context.CancelFunc
	body          *io.PipeWriter  // the client's side of the body
	cut           <-chan struct{} // closed once the upstream saw its body cut
}

// A slow upload whose request context ends (the server's read timeout, or
// the client gone) while its session lives is a timeout, not a session
// end: 408, never 401 "the session ended", which tells a client it was
// logged out.
func TestStalledUploadIsATimeoutNotASessionEnd(t *testing.T) {
	l := newLifetimes()
	rec := uploadStalled(t, l, func(s stall) {
		// What net/http does when the read deadline passes: the request's
		// context is cancelled, then the body's read fails.
		s.cancelRequest()
		s.body.CloseWithError(os.ErrDeadlineExceeded)
	})
	if rec.Code != http.StatusRequestTimeout {
		t.Errorf("status %d (%q), want 408", rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	if strings.Contains(rec.Body.String(), "session") {
		t.Errorf("a timeout answered as a session end: %q", rec.Body.String())
	}
}

// The same upload whose session ends while it stalls is a session end:
// 401.
func TestStalledUploadWhoseSessionEndsIs401(t *testing.T) {
	l := newLifetimes()
	rec := uploadStalled(t, l, func(s stall) {
		l.end()
		<-s.cut
		// The client then gives up; the answer is already decided.
		s.body.CloseWithError(io.ErrUnexpectedEOF)
	})
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("status %d (%q), want 401", rec.Code, strings.TrimSpace(rec.Body.String()))
	}
}
