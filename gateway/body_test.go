package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/gateway"
)

// rawConn opens a connection to srv (over TLS when srv serves TLS) for
// requests written byte by byte. Its deadline only keeps a broken gateway
// from hanging the test.
func rawConn(t *testing.T, srv *httptest.Server) net.Conn {
	t.Helper()
	addr := srv.Listener.Addr().String()
	var conn net.Conn
	var err error
	if srv.TLS != nil {
		cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		conn, err = tls.Dial("tcp", addr, cfg)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn
}

// rawHead is a request head as a same-origin fetch from the gateway's page
// sends it, with the session cookie when token is set. length < 0 means a
// chunked body.
func rawHead(srv *httptest.Server, method, path, token, contentType string, length int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, srv.Listener.Addr())
	b.WriteString("Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n")
	if token != "" {
		fmt.Fprintf(&b, "Cookie: %s=%s\r\n", cookieName, token)
	}
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	if length < 0 {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	} else {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	}
	b.WriteString("\r\n")
	return b.String()
}

func mustWrite(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond for at most d. It only orders events in a test;
// nothing is asserted about how long they took.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A request that rotates the session (revoke others)
// parks on its body's last byte while the session ends. When the byte
// arrives, the request must not answer with a live session.
func TestParkedBodyCannotOutliveTheSession(t *testing.T) {
	ctx := context.Background()
	enders := []struct {
		name string
		end  func(t *testing.T, e *env, victim *browser)
	}{
		{"logout", func(t *testing.T, e *env, victim *browser) {
			if r := victim.do(http.MethodPost, "/auth/logout", "", ""); r.Status != http.StatusNoContent {
				t.Fatalf("logout: %d %s", r.Status, r.Text)
			}
		}},
		{"disable", func(t *testing.T, e *env, _ *browser) {
			if err := e.accounts.Disable(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		}},
		{"passwd", func(t *testing.T, e *env, _ *browser) {
			if err := e.accounts.SetPassword(ctx, "alice", "a brand new passphrase 42"); err != nil {
				t.Fatal(err)
			}
		}},
		{"roles", func(t *testing.T, e *env, _ *browser) {
			if err := e.accounts.SetRoles(ctx, "alice", []string{"dev"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"admin-revoke", func(t *testing.T, e *env, _ *browser) {
			if r := e.adminDo(http.MethodDelete, "/admin/users/alice/sessions", e.token); r.Status != http.StatusNoContent {
				t.Fatalf("admin revoke: %d %s", r.Status, r.Text)
			}
		}},
	}
	paths := []string{"/auth/sessions/revoke-others", "/auth/account/revoke-others"}
	for _, ender := range enders {
		for _, path := range paths {
			if ender.name == "passwd" && path != paths[0] {
				continue // one password hash per run is enough
			}
			t.Run(ender.name+path, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				victim := e.minted("alice")
				stolen := victim.token // the attacker's copy of the cookie
				body := "csrf_token=" + url.QueryEscape(victim.csrf())

				conn := rawConn(t, e.srv)
				loads := e.store.finds.Load()
				mustWrite(t, conn, rawHead(e.srv, http.MethodPost, path, stolen,
					"application/x-www-form-urlencoded", int64(len(body)))+body[:len(body)-1])
				// A gateway that loads the session before the body has
				// done so by now; one that reads the body first has not.
				waitUntil(500*time.Millisecond, func() bool { return e.store.finds.Load() > loads })

				ender.end(t, e, victim)
				attacker := e.browser()
				attacker.token = stolen
				if attacker.loggedIn() {
					t.Fatal("the copied cookie still works after the session ended")
				}

				mustWrite(t, conn, body[len(body)-1:])
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if minted := setCookieToken(t, resp.Header); minted != "" {
					attacker.token = minted
					if attacker.loggedIn() {
						t.Fatalf("the parked request minted a live session (status %d)", resp.StatusCode)
					}
				}
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("parked request: status %d, want 401", resp.StatusCode)
				}
			})
		}
	}
}

// A body that never completes is cut by the per-request read deadline, and
// the session is never even looked up.
func TestSlowBodyIsCutByTheReadDeadline(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.BodyReadTimeout = 50 * time.Millisecond })
	victim := e.minted("alice")
	for _, path := range []string{"/auth/login", "/auth/logout", "/auth/sessions/revoke-others"} {
		t.Run(path, func(t *testing.T) {
			conn := rawConn(t, e.srv)
			loads := e.store.finds.Load()
			mustWrite(t, conn, rawHead(e.srv, http.MethodPost, path, victim.token,
				"application/x-www-form-urlencoded", 100)+"csrf_token=")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408", resp.StatusCode)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("the connection stayed open after the 408 (%v)", err)
			}
			// The login answers the refusal itself, in its own format,
			// after the middleware loaded the session; the others never
			// look it up.
			if n := e.store.finds.Load() - loads; n != 0 && path != "/auth/login" {
				t.Errorf("the session was looked up %d times for a request whose body never came", n)
			}
		})
	}
	if !victim.loggedIn() {
		t.Error("the victim's session ended")
	}
}

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// A 30 MiB body to a session endpoint gets 413 and is
// never buffered: the server reads a few KiB of it, whether its length is
// announced or chunked, urlencoded or multipart.
func TestOversizedBodiesAreRefusedUnread(t *testing.T) {
	const size = 30 << 20
	e := newEnv(t)
	var read atomic.Int64
	srv := httptest.NewUnstartedServer(e.gw.Handler())
	srv.Listener = countingListener{srv.Listener, &read}
	srv.Start()
	t.Cleanup(srv.Close)
	victim := e.minted("alice")

	endpoints := []struct{ method, path string }{
		{http.MethodDelete, "/auth/sessions/AAAAAAAAAAAAAAAAAAAAAA"},
		{http.MethodPost, "/auth/sessions/revoke-others"},
		{http.MethodPost, "/auth/sessions/revoke-all"},
		{http.MethodPost, "/auth/logout"},
		{http.MethodPost, "/auth/login"},
		{http.MethodPost, "/auth/account/revoke-all"},
	}
	kinds := []struct {
		name, contentType string
		chunked           bool
	}{
		{"length-urlencoded", "application/x-www-form-urlencoded", false},
		{"chunked-multipart", "multipart/form-data; boundary=x", true},
	}
	for _, ep := range endpoints {
		for _, kind := range kinds {
			t.Run(ep.method+ep.path+"/"+kind.name, func(t *testing.T) {
				conn := rawConn(t, srv)
				before := read.Load()
				length := int64(size)
				if kind.chunked {
					length = -1
				}
				mustWrite(t, conn, rawHead(srv, ep.method, ep.path, victim.token, kind.contentType, length))
				// Send the body while the answer is read: the gateway
				// answers without waiting for it.
				go func() {
					// One large field: a well-formed start, so that a
					// multipart parser goes on reading.
					first := "--x\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n"
					for sent := 0; sent < size; sent += 64 << 10 {
						chunk := first + strings.Repeat("a", 64<<10-len(first))
						first = ""
						if kind.chunked {
							chunk = fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk)
						}
						if _, err := io.WriteString(conn, chunk); err != nil {
							return
						}
					}
				}()
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				conn.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("status %d, want 413", resp.StatusCode)
				}
				if n := read.Load() - before; n > 1<<20 {
					t.Errorf("the server read %d bytes of a refused body", n)
				}
			})
		}
	}
	if !victim.loggedIn() {
		t.Error("an oversized request ended the session")
	}
}

// The two auth endpoints that take larger bodies get them whole: a CSP
// report batch and an OpenID back-channel logout of 12 KiB are not refused
// by the gateway's bound (the endpoints judge them), while any other auth
// endpoint refuses 12 KiB.
func TestLargerBodiesWhereEndpointsTakeThem(t *testing.T) {
	e := newEnv(t)
	body := strings.Repeat("a", 12<<10)
	for path, refused := range map[string]bool{
		"/auth/csp-report":              false,
		"/auth/backchannel-logout/test": false,
		"/auth/sessions/revoke-all":     true,
	} {
		r := e.browser().do(http.MethodPost, path, "application/x-www-form-urlencoded", body)
		if got := r.Status == http.StatusRequestEntityTooLarge; got != refused {
			t.Errorf("%s, 12 KiB: status %d", path, r.Status)
		}
	}
}
