package forwardauth_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

const (
	password   = "correct horse battery staple"
	cookieName = cloakroom.DefaultCookieName
	audience   = "protected-app"
)

// passwordHash is computed once per test binary: argon2id at the
// production parameters is slow under the race detector.
var passwordHash = sync.OnceValue(func() string {
	h, err := accounts.HashPassword(password, accounts.DefaultParams())
	if err != nil {
		panic(err)
	}
	return h
})

// clock is the injectable clock of the store, the manager and the JWTs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stack is a gateway with forward auth, on 127.0.0.1, whose decisions
// believe only 127.0.0.1 (the proxies the tests start connect from it;
// direct callers bind another loopback address).
type stack struct {
	t      *testing.T
	clock  *clock
	store  cloakroom.Store
	st     *gateway.Stack
	signer *upstreamjwt.Signer
	srv    *httptest.Server
}

// newStack assembles a gateway on store (a fresh memstore when nil) with
// the users alice (roles dev) and root (roles admin, dev), and the
// rulesFor 127.0.0.1 and localhost.
func newStack(t *testing.T, store cloakroom.Store, c *clock) *stack {
	t.Helper()
	return newStackWith(t, store, c, nil)
}

// newStackWith is newStack with edit applied to the gateway's parts
// first (nil for none).
func newStackWith(t *testing.T, store cloakroom.Store, c *clock, edit func(*gateway.Parts)) *stack {
	t.Helper()
	if c == nil {
		c = &clock{t: time.Now().UTC().Truncate(time.Second)}
	}
	if store == nil {
		mem := memstore.New(memstore.Config{Now: c.Now})
		t.Cleanup(func() { mem.Close() })
		store = mem
	}
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "https://cloakroom.test", Audience: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	users := memaccounts.New()
	for _, u := range []accounts.User{
		{Name: "alice", Email: "alice@example.com", Roles: []string{"dev"}},
		{Name: "root", Email: "root@example.com", Roles: []string{"admin", "dev"}},
	} {
		u.CreatedAt, u.PasswordChangedAt = c.Now(), c.Now()
		if err := users.Create(context.Background(), accounts.Record{User: u, PasswordHash: passwordHash()}); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.NewTextHandler(testLog(), nil))
	parts := gateway.Parts{
		Sessions:     cloakroom.Config{Store: store, Now: c.Now, Logger: logger},
		AccountStore: users,
		Accounts:     accounts.Config{Throttle: memaccounts.NewThrottle(0), Now: c.Now, Logger: logger},
		Admission:    signin.Config{Logger: logger, Now: c.Now},
		ForwardAuth: &forwardauth.Config{
			Proxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Audience: audience,
			Now:      c.Now,
			Rules:    rulesFor("127.0.0.1", "localhost"),
		},
		Gateway: gateway.Config{Signer: signer, Logger: logger},
	}
	if edit != nil {
		edit(&parts)
	}
	st, err := gateway.Assemble(context.Background(), parts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := &stack{t: t, clock: c, store: store, st: st, signer: signer}
	s.srv = httptest.NewServer(st.Gateway.Handler())
	t.Cleanup(s.srv.Close)
	return s
}

// rulesFor gives each host the test rules: everything needs a session,
// /public/ is public, /admin/ needs the admin role. (Chromium keeps
// __Host- cookies on plain http only for localhost.)
func rulesFor(hosts ...string) []forwardauth.Rule {
	var rules []forwardauth.Rule
	for _, h := range hosts {
		rules = append(rules,
			forwardauth.Rule{Host: h},
			forwardauth.Rule{Host: h, Prefix: "/public/", Public: true},
			forwardauth.Rule{Host: h, Prefix: "/admin/", Roles: []string{"admin"}})
	}
	return rules
}

// seen is what the protected app received.
type seen struct {
	Method string      `json:"method"`
	URI    string      `json:"uri"`
	Header http.Header `json:"header"`
}

// newApp is the protected app: it echoes what reached it.
func newApp(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen{Method: r.Method, URI: r.RequestURI, Header: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// client talks to a proxy without following redirects or keeping
// cookies: each request states its own.
type client struct {
	t    *testing.T
	base string // http://127.0.0.1:port
	http *http.Client
}

func newClient(t *testing.T, base string, localAddr string) *client {
	dialer := &net.Dialer{}
	if localAddr != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localAddr)}
	}
	return &client{t: t, base: base, http: &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) app() seen {
	var s seen
	json.Unmarshal([]byte(r.body), &s)
	return s
}

// do sends a request with headers given as name, value pairs; a "Host"
// pair sets the Host header.
func (c *client) do(method, path, body string, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1]) // as written, underscores too
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// login signs name in with a JSON login through the proxy and returns the
// session cookie ("name=value") and the CSRF token.
func (c *client) login(name string) (cookie, csrf string) {
	c.t.Helper()
	res := c.do("POST", "/auth/login", `{"username":"`+name+`","password":"`+password+`"}`, "Content-Type", "application/json")
	if res.status != http.StatusOK {
		c.t.Fatalf("login through the proxy: %d %s", res.status, res.body)
	}
	cookie = sessionCookie(res.header)
	if cookie == "" {
		c.t.Fatalf("login through the proxy set no session cookie: %v", res.header["Set-Cookie"])
	}
	var body struct {
		CSRF string `json:"csrf_token"`
	}
	json.Unmarshal([]byte(res.body), &body)
	return cookie, body.CSRF
}

// sessionCookie returns "name=value" of the session cookie a response
// sets, or "".
func sessionCookie(h http.Header) string {
	for _, line := range h["Set-Cookie"] {
		if pair, _, _ := strings.Cut(line, ";"); strings.HasPrefix(pair, cookieName+"=") && pair != cookieName+"=" {
			return pair
		}
	}
	return ""
}

func loginLocation(path string) string {
	return "/auth/login?return_to=" + url.QueryEscape(path)
}

// testLog is where the stack logs: nowhere, unless CLOAKROOM_TEST_LOG=1.
func testLog() io.Writer {
	if os.Getenv("CLOAKROOM_TEST_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}
