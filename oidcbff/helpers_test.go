package oidcbff_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/internal/testoidc"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/cloakroom/cloakroom/signin"
)

// newTestSealer returns the gateway's keyring (internal/seal) with one
// fresh key.
func newTestSealer(t testing.TB) *seal.Keyring {
	t.Helper()
	k, err := seal.Generate("test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clock is the injectable clock shared by the stores, managers and clients.
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

// syncBuffer collects output from concurrent goroutines.
type syncBuffer = syncbuf.Buffer

// tokenLog records every token a provider's token endpoint hands out, so
// tests can look for them where they must not be.
type tokenLog struct {
	mu     sync.Mutex
	tokens []string
	// refreshes counts refresh_token grants that reached the provider.
	refreshes atomic.Int64
}

func (l *tokenLog) add(body []byte) {
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		if s, ok := v[k].(string); ok && s != "" {
			l.tokens = append(l.tokens, s)
		}
	}
}

func (l *tokenLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tokens...)
}

// recorder captures a response body while passing it on.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// provider is an OpenID provider running in the test, on loopback.
type provider struct {
	name     string
	issuer   string
	clientID string
	secret   string
	tokens   *tokenLog
	// login completes the provider's login step for a browser at an
	// authorization URL and returns the redirect to the gateway's callback.
	login func(t *testing.T, b *browser, authURL string) string
	// revoke makes every refresh token of the provider's users invalid.
	revoke func()
	// key and keyID sign logout tokens as the provider would.
	key   *rsa.PrivateKey
	keyID string
	// tamper, when set, rewrites token endpoint responses.
	tamper atomic.Pointer[func(map[string]any)]
	// authorize, when set, sees authorization requests first (the mock
	// queues its next user there); rewrite, when set, changes them.
	authorize atomic.Pointer[func(url.Values)]
	rewrite   atomic.Pointer[func(url.Values)]
	// fix corrects a provider's token responses before tamper.
	fix func(map[string]any)
	// mock is set for the mock provider.
	mock *mockProvider
	// tokenCalls and jwksCalls count the requests that reached the
	// provider's token endpoint and its key set.
	tokenCalls, jwksCalls atomic.Int64
}

// wrap adds the provider-side instrumentation: token logging, refresh
// counting, tampering.
func (p *provider) wrap(next http.Handler, tokenPath, authPath string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == authPath {
			q := r.URL.Query()
			for _, f := range []*func(url.Values){p.authorize.Load(), p.rewrite.Load()} {
				if f != nil {
					(*f)(q)
				}
			}
			r.URL.RawQuery = q.Encode()
		}
		if strings.HasSuffix(r.URL.Path, "/jwks.json") || r.URL.Path == "/keys" {
			p.jwksCalls.Add(1)
		}
		if r.URL.Path != tokenPath {
			next.ServeHTTP(w, r)
			return
		}
		p.tokenCalls.Add(1)
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		if form.Get("grant_type") == "refresh_token" {
			p.tokens.refreshes.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		out := rec.Body.Bytes()
		if os.Getenv("DEBUG_TOKENS") != "" {
			fmt.Println("token endpoint", form.Get("grant_type"), rec.Code, r.Header.Get("Authorization") != "", string(out))
		}
		if rec.Code == http.StatusOK {
			var v map[string]any
			if json.Unmarshal(out, &v) == nil {
				if p.fix != nil {
					p.fix(v)
				}
				if f := p.tamper.Load(); f != nil {
					(*f)(v)
				}
				out, _ = json.Marshal(v)
			}
		}
		if rec.Code == http.StatusOK {
			p.tokens.add(out)
		}
		for k, vs := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = vs
			}
		}
		w.WriteHeader(rec.Code)
		w.Write(out)
	})
}

// mockUser is the user the mock provider signs in next.
type mockUser struct {
	sub, email string
	groups     []string
	sid        string
	authTime   time.Time
	amr        []string
}

// mockProvider is github.com/oauth2-proxy/mockoidc (see testoidc).
type mockProvider struct {
	*provider
	m *testoidc.Mock
}

func newMockProvider(t *testing.T) *mockProvider {
	t.Helper()
	mp := &mockProvider{provider: &provider{name: "mock", tokens: &tokenLog{}}}
	mp.provider.mock = mp
	// mockoidc encodes expires_in as a Go time.Duration (nanoseconds);
	// the wire format is seconds.
	mp.fix = func(v map[string]any) {
		if n, ok := v["expires_in"].(float64); ok {
			v["expires_in"] = n / float64(time.Second)
		}
	}
	mp.m = testoidc.Start(t, func(next http.Handler) http.Handler {
		return mp.wrap(next, mockoidc.TokenEndpoint, mockoidc.AuthorizationEndpoint)
	})
	mp.key = mp.m.Keypair().PrivateKey
	mp.keyID, _ = mp.m.Keypair().KeyID()
	cfg := mp.m.Config()
	mp.issuer, mp.clientID, mp.secret = cfg.Issuer, cfg.ClientID, cfg.ClientSecret
	mp.login = func(t *testing.T, b *browser, authURL string) string {
		t.Helper()
		r := b.get(authURL)
		if r.Status != http.StatusFound {
			t.Fatalf("mock authorize: status %d: %s", r.Status, r.Text)
		}
		return r.Header.Get("Location")
	}
	mp.revoke = func() {
		mp.m.Do(func(m *mockoidc.MockOIDC) { clear(m.SessionStore.Store) })
	}
	return mp
}

// queue sets the user of the next login.
func (mp *mockProvider) queue(u mockUser) {
	mp.m.Queue(testoidc.User{Subject: u.sub, Email: u.email, Groups: u.groups, SID: u.sid, AuthTime: u.authTime, AMR: u.amr})
}

// fastForward moves the provider's clock, so that new tokens differ from
// earlier ones.
func (mp *mockProvider) fastForward(d time.Duration) {
	mp.m.Do(func(m *mockoidc.MockOIDC) { m.FastForward(d) })
}

// signLogout signs a logout token with the provider's key; header typ and
// claims as given.
func (p *provider) signLogout(t *testing.T, typ string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = p.keyID
	if typ == "" {
		delete(tok.Header, "typ")
	} else {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logoutClaims returns valid logout token claims for the provider.
func (p *provider) logoutClaims(now time.Time, sub, sid string) jwt.MapClaims {
	return testoidc.LogoutClaims(p.issuer, p.clientID, now, sub, sid)
}

// digest hides a token in echoes: an upstream that returned the token
// would leak it to the browser, which is not what is under test.
func digest(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// upstream is an API server that echoes the Authorization header and
// identity it received.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"user": r.Header.Get("X-Forwarded-User"), "email": r.Header.Get("X-Forwarded-Email"),
			"groups": r.Header.Get("X-Forwarded-Groups"), "bearer": digest(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")),
		})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auth...)
}

// node is one gateway with its own session manager and OIDC client, on
// 127.0.0.1 over TLS.
type node struct {
	srv     *httptest.Server
	manager *cloakroom.Manager
	client  *oidcbff.Client
	gw      *gateway.Gateway
}

// env is a set of gateways sharing one memstore, one clock and one API
// upstream, in front of one provider.
type env struct {
	t      *testing.T
	clock  *clock
	store  *memstore.Store
	logs   *syncBuffer
	api    *upstream
	p      *provider
	nodes  []*node
	sealer *seal.Keyring
}

type envOption func(*oidcbff.Config)

// newEnv starts n gateways. providerFor is called with the gateways' URLs
// (to register redirect URIs) and returns the running provider.
func newEnv(t *testing.T, n int, providerFor func(gatewayURLs []string) *provider, opts ...envOption) *env {
	t.Helper()
	return newEnvWith(t, n, providerFor, nil, opts...)
}

// onRedis makes every gateway of an env use its own Redis client and
// store, on one key prefix of a real Redis: several nodes, as deployed.
// Without cached, client-side caching is off, so that a session ended on
// one node is refused by the next request on another (the cached window
// is measured in test/multinode).
func onRedis(t *testing.T, cached bool) storeFor {
	addr, prefix := testservers.RedisFresh(t)
	return func(now func() time.Time) cloakroom.Store {
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: !cached})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		ttl := time.Duration(-1)
		if cached {
			ttl = 0 // the default: server-assisted client-side caching
		}
		st, err := redisstore.New(client, redisstore.Config{Prefix: prefix, CacheTTL: ttl, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// storeFor gives each node of an env its own store (see onRedis); without
// one the nodes share e.store, a memstore.
type storeFor = func(now func() time.Time) cloakroom.Store

// newEnvWith is newEnv with a change to the gateways' configuration. A
// gateway with TLS false listens on plain http://localhost, where Chromium
// accepts __Host- and Secure cookies.
func newEnvWith(t *testing.T, n int, providerFor func(gatewayURLs []string) *provider, gwOpt func(*gateway.Config), opts ...envOption) *env {
	t.Helper()
	return newEnvOn(t, n, providerFor, nil, gwOpt, opts...)
}

func newEnvOn(t *testing.T, n int, providerFor func(gatewayURLs []string) *provider, stores storeFor, gwOpt func(*gateway.Config), opts ...envOption) *env {
	t.Helper()
	plain := false
	if gwOpt != nil {
		var probe gateway.Config
		probe.TLS = true
		gwOpt(&probe)
		plain = !probe.TLS
	}
	e := &env{
		t:      t,
		clock:  &clock{t: time.Now().UTC().Truncate(time.Second)},
		logs:   &syncBuffer{},
		sealer: newTestSealer(t),
	}
	e.store = memstore.New(memstore.Config{Now: e.clock.Now})
	t.Cleanup(func() { e.store.Close() })
	e.api = newUpstream(t)
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var urls []string
	for range n {
		srv := httptest.NewUnstartedServer(nil)
		e.nodes = append(e.nodes, &node{srv: srv})
		if plain {
			urls = append(urls, "http://localhost:"+strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port))
		} else {
			urls = append(urls, "https://"+srv.Listener.Addr().String())
		}
	}
	e.p = providerFor(urls)
	for i, nd := range e.nodes {
		var err error
		var st cloakroom.Store = e.store
		if stores != nil {
			st = stores(e.clock.Now)
		}
		nd.manager, err = cloakroom.New(cloakroom.Config{Store: st, Now: e.clock.Now, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		admission, err := signin.New(signin.Config{Sessions: nd.manager, Now: e.clock.Now, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		cfg := oidcbff.Config{
			Providers: []oidcbff.ProviderConfig{{
				Name: e.p.name, DisplayName: "Test " + e.p.name, Issuer: e.p.issuer,
				ClientID: e.p.clientID, ClientSecret: e.p.secret,
				Scopes: []string{"openid", "email", "profile", "groups"},
			}},
			Admission: admission,
			PublicURL: urls[i],
			Sealer:    e.sealer,
			Logger:    logger,
			Now:       e.clock.Now,
		}
		if e.p.name == "mock" {
			cfg.Providers[0].TokenAuth = "post" // mockoidc reads the secret from the form only
		}
		if e.p.name == "zitadel" {
			cfg.Providers[0].Scopes = []string{"openid", "email", "profile", "offline_access"}
		}
		for _, o := range opts {
			o(&cfg)
		}
		nd.client, err = oidcbff.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		users := memaccounts.New()
		svc := accounts.New(users, accounts.Config{Now: e.clock.Now, RevokeSessions: nd.manager.RevokeUser, Throttle: memaccounts.NewThrottle(0), Logger: logger})
		var routes []proxy.Route
		for _, prefix := range []string{"/api/", "/plain/", "/admin/"} {
			rt, err := proxy.ParseRoute(prefix + "=" + e.api.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			routes = append(routes, rt)
		}
		if err := proxy.SetModes(routes, map[string]proxy.Mode{"/api/": nd.client.Relay()}); err != nil {
			t.Fatal(err)
		}
		gwCfg := gateway.Config{
			Sessions: nd.manager, Admission: nd.client.Admission(), Accounts: svc, Routes: routes, OIDC: nd.client,
			TLS: true, Logger: logger, Now: e.clock.Now,
		}
		if gwOpt != nil {
			gwOpt(&gwCfg)
		}
		nd.gw, err = gateway.New(gwCfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.gw.Close() })
		nd.srv.Config.Handler = nd.gw.Handler()
		if plain {
			nd.srv.Start()
		} else {
			nd.srv.StartTLS()
		}
		t.Cleanup(nd.srv.Close)
	}
	return e
}

// browser follows redirects by hand across the gateway (TLS) and the
// provider (plain HTTP), keeping cookies in a jar, and records every
// response it saw.
type browser struct {
	e      *env
	node   *node
	jar    *cookiejar.Jar
	client *http.Client
	mu     sync.Mutex
	seen   []response
}

type response struct {
	URL    string
	Status int
	Header http.Header
	Text   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(r.Text), &v); err != nil {
		t.Fatalf("response is not JSON (%v): %q", err, r.Text)
	}
	return v
}

func (e *env) browser(nd *node) *browser {
	jar, _ := cookiejar.New(nil)
	c := *nd.srv.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, node: nd, jar: jar, client: &c}
}

// do sends one request; relative URLs go to the browser's gateway.
func (b *browser) do(method, target string, body io.Reader, header ...string) response {
	b.e.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.node.srv.URL + target
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	r := response{URL: target, Status: resp.StatusCode, Header: resp.Header, Text: string(text)}
	b.mu.Lock()
	b.seen = append(b.seen, r)
	b.mu.Unlock()
	return r
}

func (b *browser) get(target string, header ...string) response {
	b.e.t.Helper()
	return b.do(http.MethodGet, target, nil, header...)
}

// fetch is a same-origin script request.
func (b *browser) fetch(method, target string) response {
	b.e.t.Helper()
	return b.do(method, target, nil, "Sec-Fetch-Mode", "cors", "Accept", "application/json")
}

// sessionCookie returns the browser's session token for its gateway.
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.node.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == cloakroom.DefaultCookieName {
			return c.Value
		}
	}
	return ""
}

// on returns a browser for another gateway carrying this one's session
// cookie: the same user, load-balanced to another node.
func (b *browser) on(nd *node) *browser {
	other := b.e.browser(nd)
	u, _ := url.Parse(nd.srv.URL)
	other.jar.SetCookies(u, []*http.Cookie{{Name: cloakroom.DefaultCookieName, Value: b.sessionCookie(), Path: "/", Secure: true}})
	return other
}

// startLogin opens the provider's login button and returns the
// authorization URL the gateway redirected to.
func (b *browser) startLogin(query string) string {
	b.e.t.Helper()
	r := b.get("/auth/login/" + b.e.p.name + query)
	if r.Status != http.StatusSeeOther {
		b.e.t.Fatalf("start login: status %d: %s", r.Status, r.Text)
	}
	return r.Header.Get("Location")
}

// login signs in through the provider and returns the callback response.
func (b *browser) login() response {
	b.e.t.Helper()
	callback := b.e.p.login(b.e.t, b, b.startLogin(""))
	return b.get(callback)
}

// mustLogin signs in and checks that the session works.
func (b *browser) mustLogin() {
	b.e.t.Helper()
	r := b.login()
	if r.Status != http.StatusSeeOther || b.sessionCookie() == "" {
		b.e.t.Fatalf("callback: status %d, cookie %q: %s", r.Status, b.sessionCookie(), r.Text)
	}
}

// responses returns everything the browser saw.
func (b *browser) responses() []response {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]response(nil), b.seen...)
}

// assertNoTokens fails if any provider token appears in a response the
// browser saw (except where allowed says so) or in the gateway's log.
func (e *env) assertNoTokens(allowed func(r response, token string) bool, browsers ...*browser) {
	e.t.Helper()
	tokens := e.p.tokens.all()
	if len(tokens) == 0 {
		e.t.Fatal("the provider handed out no tokens: nothing was checked")
	}
	for _, b := range browsers {
		for _, r := range b.responses() {
			if !strings.HasPrefix(r.URL, "https://") {
				continue // the provider's own pages (plain HTTP); gateways use TLS
			}
			var head strings.Builder
			r.Header.Write(&head)
			for _, tok := range tokens {
				if strings.Contains(r.Text, tok) || strings.Contains(head.String(), tok) ||
					strings.Contains(head.String(), url.QueryEscape(tok)) {
					if allowed == nil || !allowed(r, tok) {
						e.t.Errorf("a provider token appears in the response to %s (status %d)", r.URL, r.Status)
					}
				}
			}
		}
	}
	logs := e.logs.String()
	for _, tok := range tokens {
		// Every part of a JWT: its signature alone is enough to find it.
		for part := range strings.SplitSeq(tok, ".") {
			if len(part) >= 16 && strings.Contains(logs, part) {
				e.t.Errorf("a provider token appears in the gateway's log")
			}
		}
	}
}

// withSessionCap has the client admit through an admission with a cap of n
// sessions per user (negative: none).
func withSessionCap(n int) envOption {
	return func(c *oidcbff.Config) {
		a, err := signin.New(signin.Config{Sessions: c.Admission.Sessions(), MaxSessionsPerUser: n, Now: c.Now, Logger: c.Logger})
		if err != nil {
			panic(err)
		}
		c.Admission = a
	}
}

// providerSessionCookie is the test provider's own login session cookie.
const providerSessionCookie = "op_session"

// providerSession gives a test provider a session cookie of its own, as a
// real provider has: set when the user signs in at the provider's login
// form, ended at its end-session endpoint. It records the cookie each
// end-session request carried, so tests can tell whether RP-initiated
// logout reached the provider's session.
type providerSession struct {
	mu           sync.Mutex
	issued       []string // cookie values set at sign-in
	atEndSession []string // the cookie each end-session request carried, "" for none
}

// wrap sets the cookie on a successful sign-in (a POST to loginPath that
// redirects) and records and expires it at endSessionPath.
func (s *providerSession) wrap(next http.Handler, loginPath, endSessionPath string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == endSessionPath:
			var value string
			if c, err := r.Cookie(providerSessionCookie); err == nil {
				value = c.Value
			}
			s.mu.Lock()
			s.atEndSession = append(s.atEndSession, value)
			s.mu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: providerSessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		case r.Method == http.MethodPost && r.URL.Path == loginPath:
			w = &signInWriter{ResponseWriter: w, session: s}
		}
		next.ServeHTTP(w, r)
	})
}

// signInWriter adds the session cookie to a sign-in answer that redirects
// (the login succeeded) and to no other.
type signInWriter struct {
	http.ResponseWriter
	session *providerSession
}

func (w *signInWriter) WriteHeader(code int) {
	if code == http.StatusFound || code == http.StatusSeeOther {
		value := rand.Text()
		w.session.mu.Lock()
		w.session.issued = append(w.session.issued, value)
		w.session.mu.Unlock()
		http.SetCookie(w.ResponseWriter, &http.Cookie{Name: providerSessionCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	w.ResponseWriter.WriteHeader(code)
}

// seen returns the cookie values set at sign-in and those the end-session
// endpoint received.
func (s *providerSession) seen() (issued, atEndSession []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued), slices.Clone(s.atEndSession)
}
