package multinode

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// streamGap is the pause between two events of an upstream stream.
const streamGap = 10 * time.Millisecond

// streamLateGrace is how long after the ending action's response an event
// may still be in flight; later ones count as outliving the session (a
// timing target: it fails the test only in strict mode).
const streamLateGrace = time.Second

// newStreamingUpstream serves, for every node, an event stream at
// /api/events and a protocol switch at /api/ws that sends a line every
// streamGap, both until the connection breaks. open counts the streams
// still running.
func newStreamingUpstream(t *testing.T) (*upstream, *atomic.Int64) {
	t.Helper()
	var open atomic.Int64
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		open.Add(1)
		defer open.Add(-1)
		switch r.URL.Path {
		case "/api/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for n := 0; r.Context().Err() == nil; n++ {
				fmt.Fprintf(w, "data: %d\n\n", n)
				if http.NewResponseController(w).Flush() != nil {
					return
				}
				time.Sleep(streamGap)
			}
		case "/api/ws":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			if brw.Flush() != nil {
				return
			}
			for n := 0; ; n++ {
				if _, err := fmt.Fprintf(conn, "data: %d\n", n); err != nil {
					return
				}
				time.Sleep(streamGap)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u, &open
}

// heldStream is a stream read in the background: the arrival time of each
// event, until the connection ends.
type heldStream struct {
	mu       sync.Mutex
	arrivals []time.Time
	first    chan struct{}
	closed   chan struct{}
}

func readStream(body io.Reader) *heldStream {
	s := &heldStream{first: make(chan struct{}), closed: make(chan struct{})}
	go func() {
		defer close(s.closed)
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			if !strings.HasPrefix(sc.Text(), "data: ") {
				continue
			}
			s.mu.Lock()
			s.arrivals = append(s.arrivals, time.Now())
			if len(s.arrivals) == 1 {
				close(s.first)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *heldStream) after(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.arrivals {
		if a.After(t) {
			n++
		}
	}
	return n
}

// openEvents opens the event stream through n with token.
func openEvents(t *testing.T, n *node, token string) *heldStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.srv.URL+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Cookie", cookieName+"="+token)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream through %s: status %d", n.name, resp.StatusCode)
	}
	return readStream(resp.Body)
}

// openSocket opens the protocol switch through n with token, as a page of
// the gateway's own origin does.
func openSocket(t *testing.T, n *node, token string) *heldStream {
	t.Helper()
	addr := n.srv.Listener.Addr().String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /api/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
		"Origin: http://%s\r\nSec-Fetch-Site: same-origin\r\nCookie: %s=%s\r\n\r\n", addr, addr, cookieName, token)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket through %s: status %d", n.name, resp.StatusCode)
	}
	return readStream(br)
}

// TestStreamsEndOnEveryNode checks that a session's open connections end
// on every node when the session ends on one: a session started through C
// holds an event stream and a WebSocket open through A; the session ends
// through C, by a logout or by a generation bump (what disabling the user,
// changing the password or the roles, or "log out everywhere" do). Both of
// A's connections close, their upstream sides too, and no event arrives
// more than a second after C's answer.
func TestStreamsEndOnEveryNode(t *testing.T) {
	enders := []struct {
		name string
		end  func(t *testing.T, c *client, via *node, token, csrf string)
	}{
		{"logout", func(t *testing.T, c *client, via *node, token, csrf string) {
			r, err := c.logout(via, token, csrf)
			if err != nil || r.status != http.StatusNoContent {
				t.Fatalf("logout through %s: %v, status %d: %s", via.name, err, r.status, r.body)
			}
		}},
		{"bump", func(t *testing.T, c *client, via *node, token, csrf string) {
			if err := via.manager.RevokeUser(context.Background(), userName); err != nil {
				t.Fatalf("revoke through %s: %v", via.name, err)
			}
		}},
	}
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			setup := v.open(t)
			api, open := newStreamingUpstream(t)
			a := newNode(t, "A", setup.node(t, setup.addr), api)
			c := newNode(t, "C", setup.node(t, setup.addr), api)
			// The managers' watchers read the stores: stopped first (the
			// nodes' own cleanups, which close the stores, run after).
			t.Cleanup(func() { a.manager.Close(); c.manager.Close() })
			_, notifies := a.store.store.(cloakroom.EndNotifier)
			cl := newClient(t)
			// A manager subscribes to its store's ends at its first watch,
			// in the background. One warm-up stream, ended through C and
			// closed (by notification or by the backstop re-check), has A
			// subscribed before the measured ones.
			token, csrf, err := cl.mint(c)
			if err != nil {
				t.Fatal(err)
			}
			warm := openEvents(t, a, token)
			<-warm.first
			enders[0].end(t, cl, c, token, csrf)
			select {
			case <-warm.closed:
			case <-time.After(20 * time.Second):
				t.Fatal("warm-up: the stream through A is still open after the logout through C")
			}
			for _, ender := range enders {
				t.Run(ender.name, func(t *testing.T) {
					token, csrf, err := cl.mint(c)
					if err != nil {
						t.Fatal(err)
					}
					events, socket := openEvents(t, a, token), openSocket(t, a, token)
					<-events.first
					<-socket.first

					ender.end(t, cl, c, token, csrf)
					ended := time.Now()
					for _, s := range []struct {
						name string
						*heldStream
					}{{"event stream", events}, {"websocket", socket}} {
						select {
						case <-s.closed:
						case <-time.After(20 * time.Second):
							t.Fatalf("%s: still open through A %v after the session ended through C", s.name, time.Since(ended))
						}
						late := s.after(ended.Add(streamLateGrace))
						t.Logf("%s: %d events after C's answer, %d more than %v after it", s.name, s.after(ended), late, streamLateGrace)
						// How soon is a wall-clock figure: a loaded CI machine
						// can delay the notification past the grace with nothing
						// broken. That notifications alone end a watch is
						// TestWatchEndsOnEveryNode's structural check.
						if late != 0 && notifies {
							missedTimingTarget(t, "%s: %d events arrived through A more than %v after the session ended through C", s.name, late, streamLateGrace)
						}
					}
					if !waitFor(20*time.Second, func() bool { return open.Load() == 0 }) {
						t.Errorf("%d upstream streams still run", open.Load())
					}
				})
			}
			checkNoPanics(t, a, c)
		})
	}
}

// waitFor polls cond for at most d; it orders events, it does not time
// them.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
