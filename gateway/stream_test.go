package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/proxy"
)

// streamUpstream is an API that never stops talking: /stream/events is a
// server-sent-event stream and /stream/ws a WebSocket, each sending a
// numbered event every few milliseconds until the connection breaks.
// /stream/upload counts the bodies it received whole or cut.
type streamUpstream struct {
	srv     *httptest.Server
	hits    atomic.Int64 // requests received
	open    atomic.Int64 // streams still running
	handled atomic.Int64 // streams that ended

	uploaded atomic.Int64 // /stream/upload bodies received whole
	cut      atomic.Int64 // /stream/upload bodies that broke off
}

// eventGap is the pause between two events of a stream.
const eventGap = 10 * time.Millisecond

func newStreamUpstream(t *testing.T) *streamUpstream {
	t.Helper()
	u := &streamUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.open.Add(1)
		defer func() { u.open.Add(-1); u.handled.Add(1) }()
		switch r.URL.Path {
		case "/stream/events":
			u.serveEvents(w, r)
		case "/stream/ws":
			u.serveWebSocket(w, r)
		case "/stream/upload":
			if _, err := io.ReadAll(r.Body); err != nil {
				u.cut.Add(1)
				return
			}
			u.uploaded.Add(1)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *streamUpstream) serveEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for n := 0; r.Context().Err() == nil; n++ {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", n); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		time.Sleep(eventGap)
	}
}

// websocketAccept is the Sec-WebSocket-Accept value for a key (RFC 6455).
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// serveWebSocket completes the handshake, then sends small unmasked text
// frames until a write fails.
func (u *streamUpstream) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "not a websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", websocketAccept(key))
	if brw.Flush() != nil {
		return
	}
	for n := 0; ; n++ {
		payload := fmt.Sprint(n)
		if _, err := conn.Write(append([]byte{0x81, byte(len(payload))}, payload...)); err != nil {
			return
		}
		time.Sleep(eventGap)
	}
}

// withStreamRoute routes /stream/ to up instead of the echo API.
func withStreamRoute(up *streamUpstream) envOption {
	return func(c *gateway.Config) {
		route, err := proxy.ParseRoute("/stream/=" + up.srv.URL)
		if err != nil {
			panic(err)
		}
		c.Routes = []proxy.Route{route}
	}
}

// withTrustedOrigin gives the gateway a session manager over the same store
// that trusts origin.
func withTrustedOrigin(t *testing.T, origin string) envOption {
	return func(c *gateway.Config) {
		base := c.Sessions.Config()
		m, err := cloakroom.New(cloakroom.Config{Store: c.Sessions.Store(), Now: base.Now, Logger: base.Logger, TrustedOrigins: []string{origin}})
		if err != nil {
			panic(err)
		}
		t.Cleanup(func() { m.Close() })
		c.Sessions = m
		readmit(t, c)
	}
}

// openWebSocket sends a handshake for /stream/ws with the browser's cookie
// and the given extra header pairs, and returns the response and the
// reader positioned after its head.
func (b *browser) openWebSocket(t *testing.T, srv *httptest.Server, extra ...string) (*http.Response, *bufio.Reader, net.Conn) {
	t.Helper()
	conn := rawConn(t, srv)
	var head strings.Builder
	fmt.Fprintf(&head, "GET /stream/ws HTTP/1.1\r\nHost: %s\r\n", srv.Listener.Addr())
	head.WriteString("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")
	head.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
	if b.token != "" {
		fmt.Fprintf(&head, "Cookie: %s=%s\r\n", cookieName, b.token)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		fmt.Fprintf(&head, "%s: %s\r\n", extra[i], extra[i+1])
	}
	head.WriteString("\r\n")
	mustWrite(t, conn, head.String())
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, br, conn
}

// readFrame reads one small unmasked text frame.
func readFrame(br *bufio.Reader) (string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return "", err
	}
	if hdr[0] != 0x81 || hdr[1] >= 126 {
		return "", fmt.Errorf("unexpected frame header % x", hdr)
	}
	payload := make([]byte, hdr[1])
	_, err := io.ReadFull(br, payload)
	return string(payload), err
}

// A WebSocket handshake carrying the session is
// proxied only from our own origin; anything else gets 403 before the
// upstream is contacted.
func TestWebSocketOriginCheck(t *testing.T) {
	up := newStreamUpstream(t)
	const trusted = "https://sso.example.com"
	e := newEnv(t, withStreamRoute(up), withTrustedOrigin(t, trusted))
	own := "https://" + e.srv.Listener.Addr().String()
	alice := e.minted("alice")
	tests := []struct {
		name    string
		headers []string
		want    int
	}{
		{"cross-site", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"same-site sibling", []string{"Origin", "https://sub." + e.srv.Listener.Addr().String(), "Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"foreign origin, no fetch metadata", []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"plain http origin on a TLS gateway", []string{"Origin", "http://" + e.srv.Listener.Addr().String()}, http.StatusForbidden},
		{"same-origin claim with none", []string{"Origin", own, "Sec-Fetch-Site", "none"}, http.StatusForbidden},
		{"neither origin nor fetch metadata", nil, http.StatusForbidden},
		{"null origin", []string{"Origin", "null"}, http.StatusForbidden},
		{"same-origin", []string{"Origin", own, "Sec-Fetch-Site", "same-origin"}, http.StatusSwitchingProtocols},
		{"own origin, no fetch metadata", []string{"Origin", own}, http.StatusSwitchingProtocols},
		{"trusted origin", []string{"Origin", trusted, "Sec-Fetch-Site", "cross-site"}, http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := up.hits.Load()
			resp, br, conn := alice.openWebSocket(t, e.srv, tt.headers...)
			defer conn.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusForbidden {
				if n := up.hits.Load() - hits; n != 0 {
					t.Errorf("the upstream was contacted %d times for a refused handshake", n)
				}
				return
			}
			if got := resp.Header.Get("Sec-WebSocket-Accept"); got != websocketAccept("dGhlIHNhbXBsZSBub25jZQ==") {
				t.Errorf("Sec-WebSocket-Accept %q", got)
			}
			if _, err := readFrame(br); err != nil {
				t.Errorf("first frame: %v", err)
			}
		})
	}
	// Without a session there is no ambient authority to steal: the
	// handshake gets the usual 401, not a 403.
	resp, _, conn := e.browser().openWebSocket(t, e.srv, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	conn.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a session: status %d, want 401", resp.StatusCode)
	}
}

// After the proxy took the connection over, nothing writes to it any more:
// the server logs no "WriteHeader on hijacked connection".
func TestNoWritesAfterHijack(t *testing.T) {
	up := newStreamUpstream(t)
	e := newEnv(t, withStreamRoute(up))
	var serverLog syncBuffer
	var returned atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.gw.Handler().ServeHTTP(w, r)
		returned.Add(1)
	}))
	srv.Config.ErrorLog = log.New(&serverLog, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	alice := e.minted("alice")
	resp, br, conn := alice.openWebSocket(t, srv, "Sec-Fetch-Site", "same-origin", "Origin", "https://"+srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := readFrame(br); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// The gateway's handler returns once both copies stop.
	if !waitUntil(20*time.Second, func() bool { return returned.Load() == 1 }) {
		t.Fatal("the gateway's handler did not return after the client left")
	}
	if bytes.Contains([]byte(serverLog.String()), []byte("hijacked")) {
		t.Errorf("server log: %s", serverLog.String())
	}
}

// stream is a stream opened through the gateway, read in the background:
// it records when each event arrived, until the connection ends.
type stream struct {
	mu       sync.Mutex
	arrivals []time.Time
	first    chan struct{} // closed at the first event
	closed   chan struct{} // closed when the connection ended
}

func newStream() *stream {
	return &stream{first: make(chan struct{}), closed: make(chan struct{})}
}

func (s *stream) event() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arrivals = append(s.arrivals, time.Now())
	if len(s.arrivals) == 1 {
		close(s.first)
	}
}

func (s *stream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// after counts the events that arrived after t.
func (s *stream) after(t time.Time) int {
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

// openEvents opens /stream/events with the browser's cookie.
func (b *browser) openEvents(t *testing.T) *stream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.e.srv.URL+"/stream/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = b.header.Clone()
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cookie", cookieName+"="+b.token)
	resp, err := b.e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: status %d", resp.StatusCode)
	}
	s := newStream()
	go func() {
		defer close(s.closed)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				s.event()
			}
		}
	}()
	return s
}

// openSocket opens /stream/ws from the gateway's own origin.
func (b *browser) openSocket(t *testing.T) *stream {
	t.Helper()
	resp, br, conn := b.openWebSocket(t, b.e.srv, "Sec-Fetch-Site", "same-origin", "Origin", "https://"+b.e.srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("websocket: status %d", resp.StatusCode)
	}
	_ = conn.SetDeadline(time.Time{}) // the stream's end is what is measured
	t.Cleanup(func() { conn.Close() })
	s := newStream()
	go func() {
		defer close(s.closed)
		for {
			if _, err := readFrame(br); err != nil {
				return
			}
			s.event()
		}
	}()
	return s
}

// streamEnder ends alice's session (victim holds its cookie) in one of the
// ways a session ends (logout, revocations, account changes), leaving
// bob's (bystander) alone; it returns once the action has been answered.
type streamEnder struct {
	name string
	end  func(t *testing.T, e *env, victim, bystander *browser)
	// backstop is set for ends the store announces to nobody (expiry): the
	// periodic re-check finds them. The other ends run with no re-check
	// in the test's time (noBackstop), so their notification must close
	// the stream.
	backstop bool
}

func streamEnders() []streamEnder {
	ctx := context.Background()
	must := func(t *testing.T, what string, r response, want int) {
		t.Helper()
		if r.Status != want {
			t.Fatalf("%s: status %d, want %d: %s", what, r.Status, want, r.Text)
		}
	}
	mustOK := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	return []streamEnder{
		{name: "logout", end: func(t *testing.T, e *env, v, _ *browser) {
			must(t, "logout", v.do(http.MethodPost, "/auth/logout", "", ""), http.StatusNoContent)
		}},
		{name: "revoke-by-handle", end: func(t *testing.T, e *env, v, _ *browser) {
			handle := currentHandle(t, v)
			other := e.minted("alice")
			must(t, "revoke", other.do(http.MethodDelete, "/auth/sessions/"+handle, "", ""), http.StatusNoContent)
		}},
		{name: "revoke-others", end: func(t *testing.T, e *env, v, _ *browser) {
			must(t, "revoke others", e.minted("alice").do(http.MethodPost, "/auth/sessions/revoke-others", "", ""), http.StatusOK)
		}},
		{name: "revoke-all", end: func(t *testing.T, e *env, v, _ *browser) {
			must(t, "revoke all", e.minted("alice").do(http.MethodPost, "/auth/sessions/revoke-all", "", ""), http.StatusNoContent)
		}},
		{name: "admin-revoke-user", end: func(t *testing.T, e *env, v, _ *browser) {
			must(t, "admin revoke", e.adminDo(http.MethodDelete, "/admin/users/alice/sessions", e.token), http.StatusNoContent)
		}},
		{name: "admin-revoke-device", end: func(t *testing.T, e *env, v, _ *browser) {
			must(t, "admin revoke device", e.adminDo(http.MethodDelete, "/admin/users/alice/sessions/"+currentHandle(t, v), e.token), http.StatusNoContent)
		}},
		{name: "disable", end: func(t *testing.T, e *env, v, _ *browser) { mustOK(t, e.accounts.Disable(ctx, "alice")) }},
		{name: "delete", end: func(t *testing.T, e *env, v, _ *browser) { mustOK(t, e.accounts.Delete(ctx, "alice")) }},
		{name: "roles", end: func(t *testing.T, e *env, v, _ *browser) {
			mustOK(t, e.accounts.SetRoles(ctx, "alice", []string{"dev"}))
		}},
		{name: "passwd", end: func(t *testing.T, e *env, v, _ *browser) {
			mustOK(t, e.accounts.SetPassword(ctx, "alice", "a brand new passphrase 42"))
		}},
		{name: "expiry", backstop: true, end: func(t *testing.T, e *env, v, bystander *browser) {
			// The bystander stays active; the victim only streams, which
			// is not activity.
			idle := e.manager.Config().IdleTimeout
			e.clock.Advance(idle - time.Minute)
			must(t, "bystander", bystander.get("/auth/sessions"), http.StatusOK)
			e.clock.Advance(time.Minute + time.Second)
		}},
	}
}

// currentHandle returns the handle of the browser's own session.
func currentHandle(t *testing.T, b *browser) string {
	t.Helper()
	r := b.get("/auth/sessions")
	var list struct {
		Sessions []cloakroom.Device `json:"sessions"`
	}
	if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Text), &list) != nil {
		t.Fatalf("list sessions: %d %s", r.Status, r.Text)
	}
	for _, d := range list.Sessions {
		if d.Current {
			return d.Handle
		}
	}
	t.Fatal("no current session in the list")
	return ""
}

// withRecheckInterval gives the gateway a session manager over the same
// store whose backstop re-check of watched sessions runs every d.
func withRecheckInterval(t *testing.T, d time.Duration) envOption {
	return func(c *gateway.Config) {
		cfg := c.Sessions.Config()
		cfg.RecheckInterval = d
		m, err := cloakroom.New(cfg)
		if err != nil {
			panic(err)
		}
		t.Cleanup(func() { m.Close() })
		c.Sessions = m
		readmit(t, c)
	}
}

// noBackstop is a re-check interval no test outlives: a stream that closes
// under it was closed by the store's notification of the end, not by the
// periodic re-check.
const noBackstop = time.Hour

// onlyBystanderStreams checks that the upstream's side of the ended stream
// is closed too, and that the bystander's stream is still open.
func onlyBystanderStreams(t *testing.T, up *streamUpstream, bystander *stream) {
	t.Helper()
	if !waitUntil(20*time.Second, func() bool { return up.open.Load() == 1 }) {
		t.Errorf("%d upstream streams still run, want 1 (the bystander's)", up.open.Load())
	}
	select {
	case <-bystander.closed:
		t.Fatal("another user's stream ended too")
	default:
	}
}

// streamKinds are the responses a session holds open: an event stream and
// a WebSocket.
var streamKinds = []struct {
	name string
	open func(t *testing.T, b *browser) *stream
}{
	{"events", func(t *testing.T, b *browser) *stream { return b.openEvents(t) }},
	{"websocket", func(t *testing.T, b *browser) *stream { return b.openSocket(t) }},
}

// An event stream and a WebSocket proxied for a
// session end when the session ends, however it ends; another user's
// stream goes on.
func TestStreamsEndWithTheSession(t *testing.T) {
	for _, kind := range streamKinds {
		for _, ender := range streamEnders() {
			if kind.name == "websocket" && ender.name == "passwd" {
				continue // one password hash per run is enough
			}
			t.Run(kind.name+"/"+ender.name, func(t *testing.T) {
				t.Parallel()
				up := newStreamUpstream(t)
				opts := []envOption{withStreamRoute(up)}
				if !ender.backstop {
					// Only the end's notification can close the stream in
					// time: promptness is checked by structure, not by a
					// wall-clock threshold a busy machine could miss.
					opts = append(opts, withRecheckInterval(t, noBackstop))
				}
				e := newEnv(t, opts...)
				victim, bystander := e.minted("alice"), e.minted("bob")
				st, other := kind.open(t, victim), kind.open(t, bystander)
				<-st.first
				<-other.first

				ender.end(t, e, victim, bystander)
				ended := time.Now()
				select {
				case <-st.closed:
				case <-time.After(20 * time.Second):
					t.Fatalf("the stream is still open %v after the session ended (%d events since)", time.Since(ended), st.after(ended))
				}
				t.Logf("events after the end's response: %d; the stream closed %v after it",
					st.after(ended), time.Since(ended).Round(time.Millisecond))
				onlyBystanderStreams(t, up, other)
				n := other.count()
				if !waitUntil(20*time.Second, func() bool { return other.count() > n }) {
					t.Error("another user's stream stopped delivering")
				}
			})
		}
	}
}

// A proxied API request parked on its body's last byte, on an API route: the session ends while the upstream is still waiting
// for the body. The upload is cut, so the upstream never has the request
// whole, and the client gets 401.
func TestParkedUploadNeverReachesTheUpstreamWhole(t *testing.T) {
	for _, end := range []bool{false, true} {
		t.Run(fmt.Sprintf("session-ends=%v", end), func(t *testing.T) {
			up := newStreamUpstream(t)
			e := newEnv(t, withStreamRoute(up))
			victim := e.minted("alice")
			stolen := victim.token
			body := `{"to":"mallory","amount":1000}`
			conn := rawConn(t, e.srv)
			mustWrite(t, conn, rawHead(e.srv, http.MethodPost, "/stream/upload", stolen, "application/json", int64(len(body)))+body[:len(body)-1])
			// The upstream has the request head: the gateway admitted it.
			if !waitUntil(20*time.Second, func() bool { return up.hits.Load() == 1 }) {
				t.Fatal("the upstream never received the request")
			}
			if end {
				if r := victim.do(http.MethodPost, "/auth/logout", "", ""); r.Status != http.StatusNoContent {
					t.Fatalf("logout: %d", r.Status)
				}
				// Let the end reach the held request before the last byte.
				waitUntil(20*time.Second, func() bool { return up.cut.Load() == 1 })
			}
			mustWrite(t, conn, body[len(body)-1:])
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want, wantUploads := http.StatusOK, int64(1)
			if end {
				want, wantUploads = http.StatusUnauthorized, 0
			}
			if resp.StatusCode != want {
				t.Errorf("status %d, want %d", resp.StatusCode, want)
			}
			if !waitUntil(20*time.Second, func() bool { return up.uploaded.Load()+up.cut.Load() == 1 }) {
				t.Fatal("the upstream request did not finish")
			}
			if n := up.uploaded.Load(); n != wantUploads {
				t.Errorf("the upstream received %d uploads whole, want %d", n, wantUploads)
			}
		})
	}
}
