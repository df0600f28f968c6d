package vault_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

const cookieName = cloakroom.DefaultCookieName

// syncBuffer collects output from concurrent goroutines.
type syncBuffer = syncbuf.Buffer

// stack is the gateway in front of a jwtBackend, with one vault route
// /api/.
type stack struct {
	t        *testing.T
	backend  *jwtBackend
	upstream *httptest.Server
	srv      *httptest.Server
	store    cloakroom.Store
	manager  *cloakroom.Manager
	accounts *accounts.Service
	vault    *vault.Vault
	logs     *syncBuffer
}

type stackOptions struct {
	store   cloakroom.Store    // default memstore
	keys    *seal.Keyring      // default a fresh key
	backend *jwtBackend        // default a new one
	route   func(*vault.Route) // adjusts the default route
	manager func(*cloakroom.Config)
	now     func() time.Time                                             // the clock of the store, sessions and sign-ins; default time.Now
	cap     int                                                          // sessions per user; default the admission's
	bind    func(context.Context, http.Header, *cloakroom.Session) error // the admission's Bind; default none
}

func testKeys(t testing.TB) *seal.Keyring {
	t.Helper()
	k, err := seal.Generate("test1")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func defaultRoute() vault.Route {
	must := func(c vault.Capture, err error) vault.Capture {
		if err != nil {
			panic(err)
		}
		return c
	}
	logout, err := vault.ParseEndpoint("POST /api/users/logout")
	if err != nil {
		panic(err)
	}
	return vault.Route{
		Prefix: "/api/",
		Capture: []vault.Capture{
			must(vault.ParseCapture("POST /api/users/login user.token")),
			must(vault.ParseCapture("POST /api/users user.token")),
		},
		UserClaim: "id",
		Scheme:    "Token",
		Logout:    []vault.Endpoint{logout},
	}
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	st := &stack{t: t, backend: opts.backend, store: opts.store, logs: &syncBuffer{}}
	if st.backend == nil {
		st.backend = newJWTBackend()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if st.store == nil {
		st.store = memstore.New(memstore.Config{Now: opts.now})
	}
	keys := opts.keys
	if keys == nil {
		keys = testKeys(t)
	}
	logger := slog.New(slog.NewJSONHandler(st.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st.upstream = httptest.NewServer(st.backend)
	t.Cleanup(st.upstream.Close)
	route := defaultRoute()
	if opts.route != nil {
		opts.route(&route)
	}
	mcfg := cloakroom.Config{Store: st.store, Logger: logger, Now: opts.now}
	// As gateway.Assemble does: the manager asks the route what the
	// placeholder proves and which calls keep a session alive.
	rules, err := vault.NewSessionRules([]vault.Route{route})
	if err != nil {
		t.Fatal(err)
	}
	rules.Configure(&mcfg)
	if opts.manager != nil {
		opts.manager(&mcfg)
	}
	st.manager, err = cloakroom.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := url.Parse(st.upstream.URL)
	admission, err := signin.New(signin.Config{Sessions: st.manager, Logger: logger, Now: opts.now, MaxSessionsPerUser: opts.cap, Bind: opts.bind})
	if err != nil {
		t.Fatal(err)
	}
	st.vault, err = vault.New(vault.Config{Admission: admission, Sealer: keys, Routes: []vault.Route{route}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	st.accounts = accounts.New(memaccounts.New(), accounts.Config{RevokeSessions: st.manager.RevokeUser, Throttle: memaccounts.NewThrottle(0)})
	gw, err := gateway.New(gateway.Config{
		Sessions:  st.manager,
		Admission: admission,
		Accounts:  st.accounts,
		Routes:    []proxy.Route{{Prefix: "/api/", Upstream: up, Mode: st.vault.Modes()["/api/"]}},
		Vault:     st.vault,
		Logger:    logger,
		Now:       opts.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	st.srv = httptest.NewTLSServer(gw.Handler())
	t.Cleanup(st.srv.Close)
	return st
}

// leaks sums cloakroom_vault_leaks_caught_total.
func (st *stack) leaks() float64 {
	ch := make(chan prometheus.Metric, 16)
	st.vault.Collectors()[0].Collect(ch)
	close(ch)
	sum := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			st.t.Fatal(err)
		}
		sum += d.GetCounter().GetValue()
	}
	return sum
}

// browser is one browser profile: its session cookie and what the SPA
// keeps in localStorage (the placeholder, or whatever the login answer
// held).
type browser struct {
	st     *stack
	srv    *httptest.Server
	cookie string
	stored string // the SPA's localStorage token
}

func (st *stack) browser() *browser { return &browser{st: st, srv: st.srv} }

// on returns a browser sharing b's cookie and storage against another
// gateway node.
func (b *browser) on(other *stack) *browser {
	return &browser{st: other, srv: other.srv, cookie: b.cookie, stored: b.stored}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("not JSON (%v): %q", err, r.body)
	}
	return v
}

// do sends a same-origin fetch with the cookie and, when the SPA holds a
// token, "Authorization: Token <stored>", as the SPA would. extra are
// header pairs; an empty value removes one.
func (b *browser) do(method, path, contentType, body string, extra ...string) response {
	b.st.t.Helper()
	res, err := b.srv.Client().Do(b.request(method, path, contentType, body, extra...))
	if err != nil {
		b.st.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		b.st.t.Fatal(err)
	}
	for _, line := range res.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err == nil && c.Name == cookieName {
			b.cookie = c.Value
			if c.MaxAge < 0 || c.Value == "" {
				b.cookie = ""
			}
		}
	}
	return response{status: res.StatusCode, header: res.Header, body: string(raw)}
}

// request is the request do sends.
func (b *browser) request(method, path, contentType, body string, extra ...string) *http.Request {
	b.st.t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	if err != nil {
		b.st.t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Accept-Encoding", "gzip")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if b.cookie != "" {
		req.Header.Set("Cookie", cookieName+"="+b.cookie)
	}
	if b.stored != "" {
		req.Header.Set("Authorization", "Token "+b.stored)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			req.Header.Del(extra[i])
		} else {
			req.Header.Set(extra[i], extra[i+1])
		}
	}
	return req
}

// register and login call the app's own endpoints and store the token
// field of the answer, as the SPA does.
func (b *browser) register(name string) response {
	b.st.t.Helper()
	r := b.do("POST", "/api/users", "application/json",
		`{"user":{"email":"`+name+`@example.com","password":"pw-`+name+`","username":"`+name+`"}}`)
	b.keep(r)
	return r
}

func (b *browser) login(name string) response {
	b.st.t.Helper()
	r := b.do("POST", "/api/users/login", "application/json",
		`{"user":{"email":"`+name+`@example.com","password":"pw-`+name+`"}}`)
	b.keep(r)
	return r
}

func (b *browser) keep(r response) {
	var v struct {
		User struct {
			Token string `json:"token"`
		} `json:"user"`
	}
	if json.Unmarshal([]byte(r.body), &v) == nil && v.User.Token != "" {
		b.stored = v.User.Token
	}
}

// whoami asks the backend who the call is from: the username, or "" for
// a 401.
func (b *browser) whoami() string {
	b.st.t.Helper()
	r := b.do("GET", "/api/user", "", "")
	if r.status == http.StatusUnauthorized {
		return ""
	}
	if r.status != http.StatusOK {
		b.st.t.Fatalf("GET /api/user: %d %s", r.status, r.body)
	}
	var v struct {
		User struct{ Username string } `json:"user"`
	}
	json.Unmarshal([]byte(r.body), &v)
	return v.User.Username
}

// withSession runs f on the session named by cookie, through the
// manager's own middleware, and saves what f changed.
func (st *stack) withSession(cookie string, f func(*cloakroom.Session)) {
	st.t.Helper()
	req := httptest.NewRequest("GET", "https://gateway.test/", nil)
	req.Header.Set("Cookie", cookieName+"="+cookie)
	rec := httptest.NewRecorder()
	st.manager.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f(st.manager.Session(r))
	})).ServeHTTP(rec, req)
	if rec.Code != 200 {
		st.t.Fatalf("session handler: %d", rec.Code)
	}
}

// sessionAlive reports whether a session cookie value is a live session
// in the store.
func (st *stack) sessionAlive(cookie string) bool {
	st.t.Helper()
	key, ok := cloakroom.ParseToken(cookie)
	if !ok {
		return false
	}
	_, found, err := st.store.Find(context.Background(), key)
	if err != nil {
		st.t.Fatal(err)
	}
	return found
}

// assertNoJWT fails if s holds a JWT-shaped string or any token the
// backend issued.
func (st *stack) assertNoToken(where, s string) {
	st.t.Helper()
	if strings.Contains(s, "eyJ") {
		st.t.Fatalf("%s holds a JWT-shaped string: %q", where, s)
	}
	for _, tok := range st.backend.issued() {
		parts := strings.Split(tok, ".")
		if strings.Contains(s, parts[1]) || strings.Contains(s, parts[2]) {
			st.t.Fatalf("%s holds part of an issued token", where)
		}
	}
}
