package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/proxy"
)

// lifetimes hands out Lifetimes that end when the test says so, and counts
// how many were taken and released.
type lifetimes struct {
	ctx      context.Context
	end      context.CancelFunc
	taken    atomic.Int64
	released atomic.Int64
}

func newLifetimes() *lifetimes {
	l := &lifetimes{}
	l.ctx, l.end = context.WithCancel(context.Background())
	return l
}

func (l *lifetimes) lifetime(ctx context.Context) (context.Context, context.CancelFunc) {
	l.taken.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return ctx, func() { stop(); cancel(); l.released.Add(1) }
}

func (l *lifetimes) middleware(next http.Handler) http.Handler {
	return withCall(func(c *proxy.Call) { c.Lifetime = l.lifetime })(next)
}

// talker is an upstream with a short answer, an endless event stream, and
// an endless protocol switch.
func talker(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/short":
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		case "/api/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for n := 0; r.Context().Err() == nil; n++ {
				fmt.Fprintf(w, "data: %d\n\n", n)
				if http.NewResponseController(w).Flush() != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		case "/api/switch":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			for {
				if _, err := io.WriteString(conn, "tick\n"); err != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestLifetimeHoldsOnlyLongLivedResponses(t *testing.T) {
	up := talker(t)
	l := newLifetimes()
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{mustRoute(t, "/api/="+up.URL)}})
	gw := startGateway(t, p, l.middleware)

	res, err := http.Get(gw.URL + "/api/short")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if n := l.taken.Load(); n != 0 {
		t.Errorf("a short answer took %d lifetimes", n)
	}

	res, err = http.Get(gw.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if n := l.taken.Load(); n != 1 {
		t.Fatalf("an event stream took %d lifetimes, want 1", n)
	}
	l.end()
	// The stream is cut, not completed: the client never sees a clean end.
	_, err = io.Copy(io.Discard, br)
	if err == nil {
		t.Error("the event stream ended cleanly; want it aborted")
	}
	if !waitFor(func() bool { return l.released.Load() == 1 }) {
		t.Errorf("released %d lifetimes, want 1", l.released.Load())
	}
}

func TestLifetimeClosesUpgradedConnections(t *testing.T) {
	up := talker(t)
	l := newLifetimes()
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{mustRoute(t, "/api/="+up.URL)}})
	gw := startGateway(t, p, l.middleware)

	conn, err := net.Dial("tcp", gw.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /api/switch HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n", gw.Listener.Addr())
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", res.StatusCode)
	}
	if line, err := br.ReadString('\n'); err != nil || strings.TrimSpace(line) != "tick" {
		t.Fatalf("first line %q, %v", line, err)
	}
	l.end()
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	if !waitFor(func() bool { return l.released.Load() == 1 }) {
		t.Errorf("released %d lifetimes, want 1", l.released.Load())
	}
}

func mustRoute(t *testing.T, spec string) proxy.Route {
	t.Helper()
	r, err := proxy.ParseRoute(spec)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond for a while; it orders events, it does not time them.
func waitFor(cond func() bool) bool {
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// An upload is held from its first byte: a lifetime that ends while the
// body is on its way cuts it, the upstream never has it whole, and the
// client gets 401.
func TestLifetimeCutsUploads(t *testing.T) {
	var started, whole, cut atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		if _, err := io.ReadAll(r.Body); err != nil {
			cut.Add(1)
			return
		}
		whole.Add(1)
	}))
	t.Cleanup(up.Close)
	l := newLifetimes()
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{mustRoute(t, "/api/="+up.URL)}})
	gw := startGateway(t, p, l.middleware)

	body, send := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, gw.URL+"/api/upload", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 10
	answer := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- nil
			return
		}
		res.Body.Close()
		answer <- res
	}()
	io.WriteString(send, "12345")
	if !waitFor(func() bool { return started.Load() == 1 }) {
		t.Fatal("the upstream never received the request")
	}
	if n := l.taken.Load(); n != 1 {
		t.Fatalf("an upload took %d lifetimes, want 1", n)
	}
	l.end()
	if !waitFor(func() bool { return cut.Load() == 1 }) {
		t.Fatal("the upload was not cut")
	}
	send.Write([]byte("67890"))
	send.Close()
	res := <-answer
	if res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("answer %+v, want 401", res)
	}
	if n := whole.Load(); n != 0 {
		t.Errorf("the upstream received %d uploads whole", n)
	}
}
