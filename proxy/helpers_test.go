package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// echo is what the test upstream saw.
type echo struct {
	Upstream   string
	Method     string
	Path       string
	RequestURI string
	Host       string
	Header     http.Header
}

// upstream is a real HTTP server on 127.0.0.1 that answers every request
// with an echo of it and counts the requests it received.
type upstream struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newUpstream(t testing.TB, name string) *upstream {
	t.Helper()
	u := &upstream{name: name}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		for _, c := range r.URL.Query()["set-cookie"] {
			w.Header().Add("Set-Cookie", c)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Upstream: u.name, Method: r.Method, Path: r.URL.Path, RequestURI: r.RequestURI,
			Host: r.Host, Header: r.Header,
		})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) url(t testing.TB) *url.URL {
	t.Helper()
	parsed, err := url.Parse(u.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}

func (u *upstream) route(t testing.TB, prefix string) proxy.Route {
	t.Helper()
	r, err := proxy.ParseRoute(prefix + "=" + u.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startGateway serves p on 127.0.0.1 as the gateway calls it, with the
// Call mw puts on the request (mw nil: an anonymous Call).
func startGateway(t testing.TB, p *proxy.Proxy, mw func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = served(p)
	if mw != nil {
		h = mw(h)
	}
	return startServer(t, h)
}

// startServer serves h on 127.0.0.1.
func startServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// testCallKey carries the Call a test's middleware builds to served.
type testCallKey struct{}

// served proxies with p.Serve for the Call the request carries.
func served(p *proxy.Proxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(testCallKey{}).(proxy.Call)
		p.Serve(w, r, c)
	})
}

// withCall is a stand-in for the gateway's side: it adjusts the request's
// Call with set.
func withCall(set func(*proxy.Call)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := r.Context().Value(testCallKey{}).(proxy.Call)
			set(&c)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), testCallKey{}, c)))
		})
	}
}

// sessionCookieName is the gateway's default session cookie name, which
// the tests' requests carry.
const sessionCookieName = "__Host-Http-session"

func newProxy(t testing.TB, cfg proxy.Config) *proxy.Proxy {
	t.Helper()
	if cfg.SessionCookie == "" {
		cfg.SessionCookie = sessionCookieName
	}
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	return p
}

// withIdentity is the stand-in for the gateway's authentication layer.
func withIdentity(id proxy.Identity) func(http.Handler) http.Handler {
	return withCall(func(c *proxy.Call) { c.Identity = id })
}

// do sends req with Go's client and decodes the upstream's echo when the
// status is 200.
func do(t testing.TB, req *http.Request) (int, echo, http.Header) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	var e echo
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
			t.Fatalf("decoding echo: %v", err)
		}
	} else {
		_, _ = io.Copy(io.Discard, res.Body)
	}
	return res.StatusCode, e, res.Header
}

func get(t testing.TB, rawURL string, header http.Header) (int, echo, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v // as given, not canonicalised
	}
	return do(t, req)
}

// rawRequest writes the request head itself, so that the path and header
// names reach the server exactly as written, and returns status and body.
func rawRequest(t testing.TB, addr, head string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", head, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newSigner(t testing.TB, cfg upstreamjwt.SignerConfig) *upstreamjwt.Signer {
	t.Helper()
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "https://gateway.test"
	}
	if cfg.Audience == "" {
		cfg.Audience = "api"
	}
	s, err := upstreamjwt.NewSigner(key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
