package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

const (
	password    = "correct horse battery staple"
	cookieName  = cloakroom.DefaultCookieName
	jwtAudience = "test-api"
)

// passwordHash is computed once per test binary: an argon2id hash at the
// production parameters costs a noticeable fraction of a second under the
// race detector, and every test user shares the password.
var passwordHash = sync.OnceValue(func() string {
	h, err := accounts.HashPassword(password, accounts.DefaultParams())
	if err != nil {
		panic(err)
	}
	return h
})

// clock is the injectable clock shared by the store, manager and accounts.
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

var errStoreDown = errors.New("test: store is down")

// flakyStore is a real memstore whose methods fail while fail is set, to
// check that the gateway fails closed.
type flakyStore struct {
	mem   *memstore.Store
	fail  atomic.Bool
	finds atomic.Int64 // Find calls, so tests can tell a session was loaded
	// Session writes (Commit, Delete, BumpGeneration, Rotate), and Rotate
	// calls among them, so tests can count a path's commits.
	writes, rotates atomic.Int64
	// auxCommits counts CommitAux calls: the records a path writes.
	auxCommits atomic.Int64
	// beforeRotate, when set, runs at the start of every Rotate (a test
	// parks a request there).
	beforeRotate atomic.Pointer[func()]
	// afterFindAux, when set, runs after every FindAux with its key (a
	// test moves the clock there).
	afterFindAux atomic.Pointer[func(cloakroom.Key)]
}

func (f *flakyStore) err() error {
	if f.fail.Load() {
		return errStoreDown
	}
	return nil
}

func (f *flakyStore) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	f.finds.Add(1)
	if err := f.err(); err != nil {
		return cloakroom.Record{}, false, err
	}
	return f.mem.Find(ctx, key)
}

func (f *flakyStore) Commit(ctx context.Context, rec cloakroom.Record) error {
	f.writes.Add(1)
	if err := f.err(); err != nil {
		return err
	}
	return f.mem.Commit(ctx, rec)
}

func (f *flakyStore) Delete(ctx context.Context, key cloakroom.Key) error {
	f.writes.Add(1)
	if err := f.err(); err != nil {
		return err
	}
	return f.mem.Delete(ctx, key)
}

func (f *flakyStore) List(ctx context.Context, user string) ([]cloakroom.Record, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.mem.List(ctx, user)
}

func (f *flakyStore) Generation(ctx context.Context, user string) (uint64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.mem.Generation(ctx, user)
}

func (f *flakyStore) BumpGeneration(ctx context.Context, user string) (uint64, error) {
	f.writes.Add(1)
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.mem.BumpGeneration(ctx, user)
}

func (f *flakyStore) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	f.writes.Add(1)
	f.rotates.Add(1)
	if hook := f.beforeRotate.Load(); hook != nil {
		(*hook)()
	}
	if err := f.err(); err != nil {
		return cloakroom.Record{}, err
	}
	return f.mem.Rotate(ctx, r)
}

func (f *flakyStore) Epoch(ctx context.Context) (uint64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.mem.Epoch(ctx)
}

func (f *flakyStore) BumpEpoch(ctx context.Context) (uint64, error) {
	f.writes.Add(1)
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.mem.BumpEpoch(ctx)
}

func (f *flakyStore) FindAux(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	if err := f.err(); err != nil {
		return cloakroom.AuxRecord{}, false, err
	}
	defer func() {
		if hook := f.afterFindAux.Load(); hook != nil {
			(*hook)(key)
		}
	}()
	return f.mem.FindAux(ctx, key)
}

func (f *flakyStore) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	f.auxCommits.Add(1)
	if err := f.err(); err != nil {
		return err
	}
	return f.mem.CommitAux(ctx, rec)
}

func (f *flakyStore) DeleteAux(ctx context.Context, key cloakroom.Key) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.mem.DeleteAux(ctx, key)
}

// WatchEnds passes the memstore's end notifications through, so the
// gateway's held-open connections hear of ends as on a real store.
func (f *flakyStore) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	return f.mem.WatchEnds(ctx, fn)
}

func (f *flakyStore) Ping(ctx context.Context) error { return f.err() }

func (f *flakyStore) Len() int { return f.mem.Len() }

// flakyAccounts is an account store that fails every call while down is
// set, as a database that cannot be reached does.
type flakyAccounts struct {
	accounts.Store
	down atomic.Bool
	// busy makes Get answer accounts.ErrBusy, standing in for a service
	// whose hashing slots are all held (the accounts tests hold real
	// slots; here only the gateway's answer to it is under test).
	busy atomic.Bool
}

var errAccountsDown = errors.New("test: account database unreachable")

func (f *flakyAccounts) Create(ctx context.Context, rec accounts.Record) error {
	if f.down.Load() {
		return errAccountsDown
	}
	return f.Store.Create(ctx, rec)
}

func (f *flakyAccounts) Get(ctx context.Context, name string) (accounts.Record, error) {
	if f.down.Load() {
		return accounts.Record{}, errAccountsDown
	}
	if f.busy.Load() {
		return accounts.Record{}, fmt.Errorf("test: %w", accounts.ErrBusy)
	}
	return f.Store.Get(ctx, name)
}

func (f *flakyAccounts) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	if f.down.Load() {
		return accounts.User{}, errAccountsDown
	}
	return f.Store.Update(ctx, name, c)
}

func (f *flakyAccounts) Delete(ctx context.Context, name string) error {
	if f.down.Load() {
		return errAccountsDown
	}
	return f.Store.Delete(ctx, name)
}

func (f *flakyAccounts) List(ctx context.Context) ([]accounts.User, error) {
	if f.down.Load() {
		return nil, errAccountsDown
	}
	return f.Store.List(ctx)
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct{ syncbuf.Buffer }

// events returns the decoded log records whose message is msg.
func (b *syncBuffer) events(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// upstream is an API server that echoes what it received.
type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
}

type echo struct {
	Path    string      `json:"path"`
	Headers http.Header `json:"headers"`
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		// An upstream must not be able to plant or clear the session.
		w.Header().Add("Set-Cookie", cookieName+"=planted-by-upstream; Path=/; Secure; HttpOnly")
		w.Header().Add("Set-Cookie", "upstream_pref=1; Path=/")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Path: r.URL.RequestURI(), Headers: r.Header})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// env is one gateway on 127.0.0.1 over TLS, with a memstore session
// manager, an in-memory account service, an API upstream behind the proxy
// and a static SPA folder.
type env struct {
	t        *testing.T
	clock    *clock
	store    *flakyStore
	manager  *cloakroom.Manager
	users    *memaccounts.Store
	userDB   *flakyAccounts // users, as the account service sees them
	accounts *accounts.Service
	signer   *upstreamjwt.Signer
	api      *upstream
	gw       *gateway.Gateway
	cfg      gateway.Config
	srv      *httptest.Server
	admin    *httptest.Server
	mint     *httptest.Server
	logs     *syncBuffer
	registry *prometheus.Registry
	token    string // admin token
	static   string
}

type envOption func(*gateway.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvWithAccounts(t, nil, opts...)
}

// newEnvWithAccounts is newEnv with edit applied to the account service's
// Config first (nil for none).
func newEnvWithAccounts(t *testing.T, edit func(*accounts.Config), opts ...envOption) *env {
	t.Helper()
	e := &env{
		t:        t,
		clock:    &clock{t: time.Now().UTC().Truncate(time.Second)},
		logs:     &syncBuffer{},
		registry: prometheus.NewRegistry(),
		token:    rand.Text() + rand.Text(),
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.store = &flakyStore{mem: memstore.New(memstore.Config{Now: e.clock.Now})}
	t.Cleanup(func() { e.store.mem.Close() })
	metrics, err := gateway.NewMetrics(e.registry) // wired as cloakroom serve does
	if err != nil {
		t.Fatal(err)
	}
	sessionCfg := cloakroom.Config{Store: e.store, Now: e.clock.Now, Logger: logger, Forbidden: gateway.CrossSiteRefused}
	metrics.ConfigureSessions(&sessionCfg)
	e.manager, err = cloakroom.New(sessionCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.manager.Close() }) // its stream watchers, before the store closes
	e.users = memaccounts.New()
	e.userDB = &flakyAccounts{Store: e.users}
	accountsCfg := accounts.Config{
		Now:             e.clock.Now,
		RevokeSessions:  e.manager.RevokeUser,
		Throttle:        memaccounts.NewThrottle(0),
		Logger:          logger,
		AccountThrottle: accounts.ThrottleConfig{FreeFailures: 3, BaseDelay: 30 * time.Second, MaxDelay: 5 * time.Minute},
	}
	if edit != nil {
		edit(&accountsCfg)
	}
	e.accounts = accounts.New(e.userDB, accountsCfg)
	e.addUser("alice", "alice@example.com", "admin", "dev")
	e.addUser("bob", "bob@example.com", "dev")

	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	e.signer, err = upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "https://gateway.test", Audience: jwtAudience, TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.api = newUpstream(t)
	route, err := proxy.ParseRoute("/api/=" + e.api.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	e.static = newStaticDir(t)
	admission, err := signin.New(signin.Config{Sessions: e.manager, Now: e.clock.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = gateway.Config{
		Sessions:    e.manager,
		Admission:   admission,
		Accounts:    e.accounts,
		Routes:      []proxy.Route{route},
		Signer:      e.signer,
		Static:      e.static,
		PublicPaths: []string{"/public", "/assets/"},
		AdminToken:  e.token,
		TLS:         true,
		Logger:      logger,
		Metrics:     metrics,
		Now:         e.clock.Now,
	}
	for _, o := range opts {
		o(&e.cfg)
	}
	e.gw, err = gateway.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gw.Close() })
	e.srv = httptest.NewTLSServer(e.gw.Handler())
	t.Cleanup(e.srv.Close)
	e.admin = httptest.NewServer(e.gw.AdminHandler())
	t.Cleanup(e.admin.Close)
	e.mint = httptest.NewServer(e.cfg.Sessions.Handler(http.HandlerFunc(e.mintSession)))
	t.Cleanup(e.mint.Close)
	return e
}

// addUser stores a user with the shared password hash, skipping a fresh
// argon2id computation per user.
func (e *env) addUser(name, email string, roles ...string) {
	e.t.Helper()
	now := e.clock.Now()
	err := e.users.Create(context.Background(), accounts.Record{
		User:         accounts.User{Name: name, Email: email, Roles: roles, CreatedAt: now, PasswordChangedAt: now},
		PasswordHash: passwordHash(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// mintSession signs the ?user= in through the admission, as the gateway's
// login does after checking the password. Tests that are not about the
// login form use it to skip a password hash.
func (e *env) mintSession(w http.ResponseWriter, r *http.Request) {
	user, err := e.accounts.Get(r.Context(), r.URL.Query().Get("user"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	err = e.cfg.Admission.Admit(r.Context(), r, w.Header(), signin.Identity{
		UserID: user.Name, Method: signin.Password, AMR: []string{signin.AMRPassword},
		AuthTime: e.clock.Now(), Email: user.Email, Roles: user.Roles,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func newStaticDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "spa")
	files := map[string]string{
		"index.html":          `<!doctype html><title>Test SPA</title><h1 id="app">cloakroom test app</h1>`,
		"app.js":              `console.log("app")`,
		"assets/style.css":    `body{}`,
		"public/landing.html": `<p>landing</p>`,
		".env":                "SECRET=dotfile",
		"assets/.hidden":      "hidden",
		"docs/readme.txt":     "docs",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(base, "outside-secret.txt")
	if err := os.WriteFile(outside, []byte("OUTSIDE SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is a client with one session cookie, managed by hand so tests
// can replay old tokens. By default it sends what a modern browser sends
// for a same-origin fetch.
type browser struct {
	e      *env
	token  string
	device string // the device cookie, kept like a browser keeps it
	// pending is the pending sign-in cookie between the two factors.
	pending string
	header  http.Header
}

func (e *env) browser() *browser {
	h := http.Header{}
	h.Set("Sec-Fetch-Site", "same-origin")
	h.Set("Sec-Fetch-Mode", "cors")
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36")
	return &browser{e: e, header: h}
}

// minted returns a browser logged in as user without the login form.
func (e *env) minted(user string) *browser {
	e.t.Helper()
	b := e.browser()
	req, err := http.NewRequest(http.MethodGet, e.mint.URL+"/?user="+url.QueryEscape(user), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("User-Agent", b.header.Get("User-Agent"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	b.token = setCookieToken(e.t, resp.Header)
	if b.token == "" {
		e.t.Fatalf("mint %s: no session cookie (status %d)", user, resp.StatusCode)
	}
	return b
}

type response struct {
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

// do sends a request with the browser's cookie and default headers, plus
// header pairs in extra ("Name", "value", ...; an empty value removes a
// default). It keeps the cookie the response sets.
func (b *browser) do(method, path, contentType, body string, extra ...string) response {
	b.e.t.Helper()
	req, err := http.NewRequest(method, b.e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header = b.header.Clone()
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if b.token != "" {
		req.Header.Set("Cookie", cookieName+"="+b.token)
	}
	if b.device != "" {
		req.AddCookie(&http.Cookie{Name: signin.DeviceCookie, Value: b.device})
	}
	if b.pending != "" {
		req.AddCookie(&http.Cookie{Name: "__Host-Http-pending", Value: b.pending})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			req.Header.Del(extra[i])
		} else {
			req.Header.Set(extra[i], extra[i+1])
		}
	}
	client := *b.e.srv.Client() // a copy: tests run browsers in parallel
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	for _, line := range resp.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == cookieName {
			b.token = c.Value // "" when expired
		} else if err == nil && c.Name == signin.DeviceCookie {
			b.device = c.Value
		} else if err == nil && c.Name == "__Host-Http-pending" {
			b.pending = c.Value // "" when expired
		}
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Text: string(text)}
}

func (b *browser) get(path string, extra ...string) response {
	b.e.t.Helper()
	return b.do(http.MethodGet, path, "", "", extra...)
}

func (b *browser) postJSON(path string, v any, extra ...string) response {
	b.e.t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(http.MethodPost, path, "application/json", string(body), extra...)
}

func (b *browser) postForm(path string, form url.Values, extra ...string) response {
	b.e.t.Helper()
	return b.do(http.MethodPost, path, "application/x-www-form-urlencoded", form.Encode(), extra...)
}

// login logs in through the JSON endpoint and returns the CSRF token.
func (b *browser) login(user string) string {
	b.e.t.Helper()
	r := b.postJSON("/auth/login", map[string]string{"username": user, "password": password})
	if r.Status != http.StatusOK {
		b.e.t.Fatalf("login %s: status %d: %s", user, r.Status, r.Text)
	}
	return r.json(b.e.t)["csrf_token"].(string)
}

// csrf returns the session's CSRF token from /auth/session.
func (b *browser) csrf() string {
	b.e.t.Helper()
	r := b.get("/auth/session")
	if r.Status != http.StatusOK {
		b.e.t.Fatalf("GET /auth/session: status %d: %s", r.Status, r.Text)
	}
	return r.json(b.e.t)["csrf_token"].(string)
}

// loggedIn reports whether the browser's cookie is a live session.
func (b *browser) loggedIn() bool {
	b.e.t.Helper()
	r := b.get("/auth/session")
	switch r.Status {
	case http.StatusOK:
		return true
	case http.StatusUnauthorized:
		return false
	}
	b.e.t.Fatalf("GET /auth/session: unexpected status %d: %s", r.Status, r.Text)
	return false
}

// adminDo calls the admin listener with the given bearer token ("" for no
// Authorization header).
func (e *env) adminDo(method, path, token string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.admin.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Text: string(text)}
}

func setCookieToken(t *testing.T, h http.Header) string {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == cookieName {
			return c.Value
		}
	}
	return ""
}

func sessionCookieLine(h http.Header) string {
	for _, line := range h.Values("Set-Cookie") {
		if strings.HasPrefix(line, cookieName+"=") {
			return line
		}
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// withSessionCap has the gateway admit through an admission with a cap of
// n sessions per user (negative: none).
func withSessionCap(n int) func(*gateway.Config) {
	return func(c *gateway.Config) {
		a, err := signin.New(signin.Config{Sessions: c.Sessions, MaxSessionsPerUser: n, Now: c.Now, Logger: c.Logger})
		if err != nil {
			panic(err)
		}
		c.Admission = a
	}
}

// readmit gives c an admission on its Sessions, after an option replaced
// the manager.
func readmit(t *testing.T, c *gateway.Config) {
	t.Helper()
	a, err := signin.New(signin.Config{Sessions: c.Sessions, Now: c.Now, Logger: c.Logger})
	if err != nil {
		t.Fatal(err)
	}
	c.Admission = a
}
