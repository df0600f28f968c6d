package cloakroom_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

// countingStore wraps a store, counts calls and can be made to fail.
type countingStore struct {
	cloakroom.Store
	finds, commits, deletes, rotates atomic.Int64
	fail                             atomic.Bool
}

var errStoreDown = errors.New("store is down")

func (s *countingStore) Find(ctx context.Context, k cloakroom.Key) (cloakroom.Record, bool, error) {
	s.finds.Add(1)
	if s.fail.Load() {
		return cloakroom.Record{}, false, errStoreDown
	}
	return s.Store.Find(ctx, k)
}

func (s *countingStore) Commit(ctx context.Context, r cloakroom.Record) error {
	s.commits.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	return s.Store.Commit(ctx, r)
}

func (s *countingStore) Delete(ctx context.Context, k cloakroom.Key) error {
	s.deletes.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	return s.Store.Delete(ctx, k)
}

func (s *countingStore) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	s.rotates.Add(1)
	if s.fail.Load() {
		return cloakroom.Record{}, errStoreDown
	}
	return s.Store.Rotate(ctx, r)
}

func (s *countingStore) Generation(ctx context.Context, u string) (uint64, error) {
	if s.fail.Load() {
		return 0, errStoreDown
	}
	return s.Store.Generation(ctx, u)
}

// app is a test application behind the middleware.
type app struct {
	t       *testing.T
	m       *cloakroom.Manager
	store   *countingStore
	clock   *storetest.Clock
	handler http.Handler
	errs    atomic.Int64
}

func newApp(t *testing.T, tweak func(*cloakroom.Config)) *app {
	t.Helper()
	clock := storetest.NewClock(storetest.Start)
	ms := memstore.New(memstore.Config{Now: clock.Now})
	t.Cleanup(func() { ms.Close() })
	a := &app{t: t, store: &countingStore{Store: ms}, clock: clock}
	cfg := cloakroom.Config{
		Store:  a.store,
		Now:    clock.Now,
		Logger: slog.New(slog.DiscardHandler),
		OnError: func(r *http.Request, err error) {
			a.errs.Add(1)
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := cloakroom.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.m = m
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		opts := cloakroom.LoginOptions{Persistent: r.URL.Query().Get("remember") == "1"}
		if err := m.Session(r).Login(r.Context(), r.URL.Query().Get("user"), opts); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "welcome")
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Session(r).Logout(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		if s.Err() != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "user=%s", s.UserID())
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		m.Session(r).Put(r.URL.Query().Get("k"), r.URL.Query().Get("v"))
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, m.Session(r).GetString(r.URL.Query().Get("k")))
	})
	mux.HandleFunc("GET /cookie-sent", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, m.Session(r).CookieSent())
	})
	mux.HandleFunc("GET /csrf", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, m.Session(r).CSRFToken())
	})
	mux.HandleFunc("POST /revoke-others", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Session(r).RevokeOthers(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /logout-everywhere", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Session(r).LogoutEverywhere(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Session(r).Renew(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.Handle("GET /private", m.RequireLogin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret")
	})))
	a.handler = m.Handler(mux)
	return a
}

// do sends a same-origin request (as a browser would label it) with the
// given cookie value, if any.
func (a *app) do(method, target, token string, hdr ...string) *httptest.ResponseRecorder {
	a.t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if method != http.MethodGet {
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	if token != "" {
		r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	return w
}

// sessionCookie returns the session cookie the response set, or nil.
func sessionCookie(w *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == cloakroom.DefaultCookieName {
			return c
		}
	}
	return nil
}

func (a *app) login(user string) string {
	a.t.Helper()
	w := a.do("POST", "/login?user="+user, "")
	c := sessionCookie(w)
	if w.Code != 200 || c == nil {
		a.t.Fatalf("login: status %d, cookie %v", w.Code, c)
	}
	return c.Value
}

func (a *app) whoami(token string) string {
	a.t.Helper()
	return a.do("GET", "/whoami", token).Body.String()
}

func TestLoginCookieAttributes(t *testing.T) {
	a := newApp(t, nil)
	w := a.do("POST", "/login?user=alice", "")
	raw := w.Header().Get("Set-Cookie")
	c := sessionCookie(w)
	if c == nil {
		t.Fatalf("no session cookie in %q", raw)
	}
	if len(c.Value) != cloakroom.TokenLength {
		t.Errorf("token length %d, want %d", len(c.Value), cloakroom.TokenLength)
	}
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie %q: want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", raw)
	}
	if c.MaxAge != 0 || strings.Contains(raw, "Expires") {
		t.Errorf("cookie %q: a browser-session cookie must not carry Max-Age or Expires", raw)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := w.Header().Get("Vary"); got != "Cookie" {
		t.Errorf("Vary = %q, want Cookie", got)
	}
	if got := a.whoami(c.Value); got != "user=alice" {
		t.Errorf("whoami = %q, want user=alice", got)
	}
}

func TestRememberMeCookieHasMaxAge(t *testing.T) {
	a := newApp(t, func(c *cloakroom.Config) { c.MaxAbsoluteTimeout = 30 * 24 * time.Hour })
	w := a.do("POST", "/login?user=alice&remember=1", "")
	c := sessionCookie(w)
	if c == nil || c.MaxAge != int((12*time.Hour)/time.Second) {
		t.Fatalf("remember-me cookie %v: want Max-Age of the absolute lifetime (43200)", w.Header().Get("Set-Cookie"))
	}
}

func TestStrictSameSite(t *testing.T) {
	a := newApp(t, func(c *cloakroom.Config) { c.SameSite = http.SameSiteStrictMode })
	if c := sessionCookie(a.do("POST", "/login?user=alice", "")); c == nil || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %v, want SameSite=Strict", c)
	}
}

// A request carrying the session cookie twice is read as carrying none,
// whichever copy is live: a sibling domain may have planted the other.
func TestRepeatedSessionCookieRefused(t *testing.T) {
	a := newApp(t, nil)
	alice, bob := a.login("alice"), a.login("bob")
	c := cloakroom.DefaultCookieName + "="
	for _, cookie := range []string{c + alice + "; " + c + bob, c + alice + "; " + c + alice} {
		if got := a.do("GET", "/whoami", "", "Cookie", cookie).Body.String(); got != "user=" {
			t.Errorf("Cookie %q: %q, want no user", cookie, got)
		}
	}
	if got := a.whoami(alice); got != "user=alice" {
		t.Fatalf("the cookie once: %q", got)
	}
}

func TestLoginRotatesPlantedToken(t *testing.T) {
	a := newApp(t, nil)
	// The attacker obtains a valid anonymous session and plants its token.
	w := a.do("POST", "/put?k=cart&v=1", "")
	planted := sessionCookie(w).Value
	if got := a.do("GET", "/get?k=cart", planted).Body.String(); got != "1" {
		t.Fatalf("anonymous session value = %q, want 1", got)
	}
	w = a.do("POST", "/login?user=victim", planted)
	fresh := sessionCookie(w)
	if fresh == nil || fresh.Value == planted {
		t.Fatalf("login kept the planted token")
	}
	if got := a.whoami(planted); got != "user=" {
		t.Fatalf("planted token after login: %q, want no user", got)
	}
	if got := a.whoami(fresh.Value); got != "user=victim" {
		t.Fatalf("new token: %q, want user=victim", got)
	}
}

func TestLogoutRevokesServerSide(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	w := a.do("POST", "/logout", token)
	if got := w.Header().Get("Clear-Site-Data"); got != `"storage"` {
		t.Errorf("Clear-Site-Data = %q", got)
	}
	c := sessionCookie(w)
	if c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("logout cookie %q: want an expired, empty cookie", w.Header().Get("Set-Cookie"))
	}
	// The browser dropped the cookie, but an attacker replays a copy.
	if got := a.whoami(token); got != "user=" {
		t.Fatalf("replayed token after logout: %q, want no user", got)
	}
	if code := a.do("GET", "/private", token).Code; code != http.StatusUnauthorized {
		t.Fatalf("replayed token on a protected route: %d, want 401", code)
	}
}

func TestIdleTimeout(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	a.clock.Advance(29 * time.Minute)
	if got := a.whoami(token); got != "user=alice" {
		t.Fatalf("after 29 min idle: %q", got)
	}
	// That request touched the session, so the idle clock restarted.
	a.clock.Advance(29 * time.Minute)
	if got := a.whoami(token); got != "user=alice" {
		t.Fatalf("after 29 more min: %q", got)
	}
	a.clock.Advance(30 * time.Minute)
	w := a.do("GET", "/whoami", token)
	if got := w.Body.String(); got != "user=" {
		t.Fatalf("after 30 min idle: %q, want no user", got)
	}
	if c := sessionCookie(w); c == nil || c.MaxAge >= 0 {
		t.Fatalf("an expired session's cookie should be expired, got %q", w.Header().Get("Set-Cookie"))
	}
}

func TestAbsoluteTimeoutSurvivesRenew(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	for i := 0; i < 23; i++ { // 11.5 hours of activity, renewing on the way
		a.clock.Advance(30*time.Minute - time.Second)
		w := a.do("POST", "/renew", token)
		c := sessionCookie(w)
		if c == nil {
			t.Fatalf("renew %d: no new cookie (status %d: %s)", i, w.Code, w.Body)
		}
		if a.whoami(token) != "user=" {
			t.Fatalf("renew %d: the old token still works", i)
		}
		token = c.Value
	}
	if got := a.whoami(token); got != "user=alice" {
		t.Fatalf("before the absolute deadline: %q", got)
	}
	a.clock.Advance(30 * time.Minute)
	if got := a.whoami(token); got != "user=" {
		t.Fatalf("after 12 h: %q, want no user: Renew must not extend the absolute lifetime", got)
	}
}

func TestReadOnlyRequestsDoNotWrite(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	before := a.store.commits.Load()
	for i := 0; i < 10; i++ {
		a.clock.Advance(5 * time.Second)
		a.whoami(token)
	}
	if n := a.store.commits.Load() - before; n != 0 {
		t.Fatalf("10 reads within a minute made %d store writes, want 0", n)
	}
	a.clock.Advance(time.Minute)
	a.whoami(token)
	if n := a.store.commits.Load() - before; n != 1 {
		t.Fatalf("a read after the touch interval made %d writes, want 1", n)
	}
}

func TestMalformedCookiesSkipTheStore(t *testing.T) {
	a := newApp(t, nil)
	valid := a.login("alice")
	cases := map[string]string{
		"empty":        "",
		"short":        valid[:42],
		"long":         valid + "A",
		"bad alphabet": "!" + valid[1:],
		"padding":      valid[:42] + "=",
		"noncanonical": valid[:42] + "B", // last char carries non-zero padding bits
		"oversized":    strings.Repeat("A", 20000),
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			before := a.store.finds.Load()
			r := httptest.NewRequest("GET", "/whoami", nil)
			r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+value)
			w := httptest.NewRecorder()
			a.handler.ServeHTTP(w, r)
			if w.Body.String() != "user=" {
				t.Errorf("got %q, want no session", w.Body)
			}
			if n := a.store.finds.Load() - before; n != 0 {
				t.Errorf("%d store lookups, want 0", n)
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		before := a.store.finds.Load()
		r := httptest.NewRequest("GET", "/whoami", nil)
		r.Header.Add("Cookie", cloakroom.DefaultCookieName+"="+valid)
		r.Header.Add("Cookie", cloakroom.DefaultCookieName+"="+valid)
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, r)
		if w.Body.String() != "user=" || a.store.finds.Load() != before {
			t.Errorf("two session cookies: got %q with %d lookups, want no session and none", w.Body, a.store.finds.Load()-before)
		}
	})
	t.Run("huge cookie header", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/whoami", nil)
		r.Header.Set("Cookie", "junk="+strings.Repeat("x", 20000)+"; "+cloakroom.DefaultCookieName+"="+valid)
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, r)
		if w.Body.String() != "user=" {
			t.Errorf("got %q, want no session", w.Body)
		}
	})
}

func TestTokenOutsideTheCookieIsIgnored(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	for _, target := range []string{
		"/whoami?session=" + token,
		"/whoami?" + cloakroom.DefaultCookieName + "=" + token,
		"/whoami?token=" + token,
	} {
		if got := a.do("GET", target, "").Body.String(); got != "user=" {
			t.Errorf("GET %s: %q, want no session", target, got)
		}
	}
	for _, h := range []string{"Authorization", "X-Session-Token", cloakroom.DefaultCookieName} {
		if got := a.do("GET", "/whoami", "", h, "Bearer "+token).Body.String(); got != "user=" {
			t.Errorf("token in %s header: %q, want no session", h, got)
		}
	}
}

func TestRevokeOneAllOthers(t *testing.T) {
	a := newApp(t, nil)
	ctx := context.Background()
	phone := a.login("alice")
	a.clock.Advance(time.Second)
	laptop := a.login("alice")
	a.clock.Advance(time.Second)
	tablet := a.login("alice")
	bob := a.login("bob")
	devices, err := a.m.Devices(ctx, "alice")
	if err != nil || len(devices) != 3 {
		t.Fatalf("Devices = %d, %v; want 3", len(devices), err)
	}
	for _, d := range devices {
		if strings.Contains(d.Handle, phone) || d.Handle == "" {
			t.Fatalf("handle %q must be a public identifier, not the token", d.Handle)
		}
	}

	// Revoke one by handle: the tablet (the newest).
	if err := a.m.RevokeDevice(ctx, "alice", devices[2].Handle); err != nil {
		t.Fatal(err)
	}
	if a.whoami(tablet) != "user=" || a.whoami(phone) != "user=alice" {
		t.Fatalf("revoke by handle: tablet %q, phone %q", a.whoami(tablet), a.whoami(phone))
	}
	if err := a.m.RevokeDevice(ctx, "bob", devices[0].Handle); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("revoking alice's handle as bob: %v, want ErrNotFound", err)
	}

	// Revoke others from the laptop: the phone dies, the laptop goes on
	// under a new token.
	w := a.do("POST", "/revoke-others", laptop)
	renewed := sessionCookie(w)
	if w.Code != 200 || renewed == nil {
		t.Fatalf("revoke-others: %d %s", w.Code, w.Body)
	}
	if a.whoami(phone) != "user=" || a.whoami(laptop) != "user=" || a.whoami(renewed.Value) != "user=alice" {
		t.Fatalf("after revoke-others: phone %q, old laptop %q, new laptop %q", a.whoami(phone), a.whoami(laptop), a.whoami(renewed.Value))
	}

	// Log out everywhere.
	w = a.do("POST", "/logout-everywhere", renewed.Value)
	if w.Code != 200 || w.Header().Get("Clear-Site-Data") == "" {
		t.Fatalf("logout-everywhere: %d, Clear-Site-Data %q", w.Code, w.Header().Get("Clear-Site-Data"))
	}
	if a.whoami(renewed.Value) != "user=" {
		t.Fatal("session alive after logout everywhere")
	}
	if a.whoami(bob) != "user=bob" {
		t.Fatal("another user's session died")
	}
}

func TestGenerationBumpEndsEverySession(t *testing.T) {
	a := newApp(t, nil)
	tokens := []string{a.login("alice"), a.login("alice")}
	if err := a.m.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if a.whoami(tok) != "user=" {
			t.Fatal("session survived a generation bump")
		}
	}
	if a.whoami(a.login("alice")) != "user=alice" {
		t.Fatal("a login after the bump must work")
	}
}

func TestCrossSiteUnsafeRequestRefused(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	w := a.do("POST", "/logout", token, "Sec-Fetch-Site", "cross-site")
	if w.Code != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", w.Code)
	}
	w = a.do("POST", "/logout", token, "Sec-Fetch-Site", "", "Origin", "https://evil.example")
	if w.Code != http.StatusForbidden {
		t.Fatalf("POST with a foreign Origin: %d, want 403", w.Code)
	}
	if a.whoami(token) != "user=alice" {
		t.Fatal("a refused request logged the user out")
	}
}

func TestHeaderlessUnsafeRequestNeedsToken(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	csrf := a.do("GET", "/csrf", token).Body.String()
	if len(csrf) < 40 || strings.Contains(csrf, token) {
		t.Fatalf("CSRF token %q: want an unguessable value unrelated in form to the session token", csrf)
	}
	// Neither Sec-Fetch-Site nor Origin: CrossOriginProtection lets it
	// through, our layer must not.
	if w := a.do("POST", "/put?k=a&v=1", token, "Sec-Fetch-Site", ""); w.Code != http.StatusForbidden {
		t.Fatalf("headerless POST without token: %d, want 403", w.Code)
	}
	if w := a.do("POST", "/put?k=a&v=1", token, "Sec-Fetch-Site", "", cloakroom.CSRFHeader, csrf[:len(csrf)-1]+"x"); w.Code != http.StatusForbidden {
		t.Fatalf("headerless POST with a wrong token: %d, want 403", w.Code)
	}
	if w := a.do("POST", "/put?k=a&v=1", token, cloakroom.CSRFHeader, "stale"); w.Code != http.StatusForbidden {
		t.Fatalf("same-origin POST with a wrong token: %d, want 403", w.Code)
	}
	if w := a.do("POST", "/put?k=a&v=1", token, "Sec-Fetch-Site", "", cloakroom.CSRFHeader, csrf); w.Code != http.StatusOK {
		t.Fatalf("headerless POST with the token: %d, want 200", w.Code)
	}
	if got := a.do("GET", "/get?k=a", token).Body.String(); got != "1" {
		t.Fatalf("value = %q, want 1", got)
	}
	// Without a session cookie there is no ambient authority to protect.
	if w := a.do("POST", "/put?k=a&v=1", "", "Sec-Fetch-Site", ""); w.Code != http.StatusOK {
		t.Fatalf("headerless POST without a cookie: %d, want 200", w.Code)
	}
}

func TestRequireCSRFTokenEverywhere(t *testing.T) {
	a := newApp(t, func(c *cloakroom.Config) { c.RequireCSRFToken = true })
	token := a.login("alice")
	if w := a.do("POST", "/put?k=a&v=1", token); w.Code != http.StatusForbidden {
		t.Fatalf("same-origin POST without token in strict mode: %d, want 403", w.Code)
	}
	csrf := a.do("GET", "/csrf", token).Body.String()
	if w := a.do("POST", "/put?k=a&v=1", token, cloakroom.CSRFHeader, csrf); w.Code != http.StatusOK {
		t.Fatalf("same-origin POST with token: %d, want 200", w.Code)
	}
}

func TestStoreFailureFailsClosed(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	a.store.fail.Store(true)
	w := a.do("GET", "/whoami", token)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("whoami with the store down: %d %q, want 503", w.Code, w.Body)
	}
	if w := a.do("GET", "/private", token); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "secret") {
		t.Fatalf("protected route with the store down: %d %q, want 503", w.Code, w.Body)
	}
	if c := sessionCookie(w); c != nil {
		t.Fatalf("a store outage must not clear the cookie, got %q", w.Header().Get("Set-Cookie"))
	}
	if a.errs.Load() == 0 {
		t.Fatal("OnError was not called")
	}
	// A logout that cannot reach the store must not claim success; the
	// cookie is expired all the same.
	if w := a.do("POST", "/logout", token); w.Code != http.StatusInternalServerError || sessionCookie(w) == nil || sessionCookie(w).MaxAge >= 0 {
		t.Fatalf("logout with the store down: %d, cookie %q; want an error and an expired cookie", w.Code, w.Header().Get("Set-Cookie"))
	}
	if w := a.do("POST", "/login?user=mallory", ""); w.Code != http.StatusInternalServerError || sessionCookie(w) != nil {
		t.Fatalf("login with the store down: %d, cookie %v", w.Code, sessionCookie(w))
	}
	// A value change that cannot be saved must not look saved.
	a.store.fail.Store(false)
	token = a.login("alice")
	a.store.fail.Store(true)
	if w := a.do("POST", "/put?k=a&v=1", token); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("unsaveable change: %d, want 503", w.Code)
	}
	a.store.fail.Store(false)
	if a.whoami(token) != "user=alice" {
		t.Fatal("session lost after the store came back")
	}
}

func TestConcurrentWritesToDifferentKeys(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w := a.do("POST", fmt.Sprintf("/put?k=key%d&v=%d", i, i), token); w.Code != 200 {
				t.Errorf("put %d: %d %s", i, w.Code, w.Body)
			}
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if got := a.do("GET", fmt.Sprintf("/get?k=key%d", i), token).Body.String(); got != fmt.Sprint(i) {
			t.Errorf("key%d = %q, want %d: a concurrent write was lost", i, got, i)
		}
	}
}

func TestAnonymousSessionOnlyWhenNeeded(t *testing.T) {
	a := newApp(t, nil)
	if w := a.do("GET", "/whoami", ""); sessionCookie(w) != nil || w.Header().Get("Cache-Control") == "no-store" {
		t.Fatalf("a request without session state got a cookie or no-store: %q", w.Header())
	}
	w := a.do("POST", "/put?k=cart&v=3", "")
	c := sessionCookie(w)
	if c == nil {
		t.Fatal("Put without a session did not start one")
	}
	if got := a.do("GET", "/get?k=cart", c.Value).Body.String(); got != "3" {
		t.Fatalf("cart = %q, want 3", got)
	}
	if a.whoami(c.Value) != "user=" {
		t.Fatal("an anonymous session must not be logged in")
	}
}

func TestLoginTimeoutsWithinMaxima(t *testing.T) {
	a := newApp(t, nil)
	err := a.m.FromContext(context.Background()).Login(context.Background(), "alice", cloakroom.LoginOptions{})
	if !errors.Is(err, cloakroom.ErrNoMiddleware) {
		t.Fatalf("Login outside the middleware: %v, want ErrNoMiddleware", err)
	}
	var got error
	h := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = a.m.Session(r).Login(r.Context(), "alice", cloakroom.LoginOptions{AbsoluteTimeout: 30 * 24 * time.Hour})
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if !errors.Is(got, cloakroom.ErrInvalidInput) {
		t.Fatalf("absolute timeout above the maximum: %v, want ErrInvalidInput", got)
	}

	// Within raised maxima, a remember-me login gets exactly what it asked.
	b := newApp(t, func(c *cloakroom.Config) {
		c.MaxIdleTimeout, c.MaxAbsoluteTimeout = 7*24*time.Hour, 30*24*time.Hour
	})
	var times [3]time.Time
	h = b.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := b.m.Session(r)
		got = s.Login(r.Context(), "alice", cloakroom.LoginOptions{Persistent: true, IdleTimeout: 7 * 24 * time.Hour, AbsoluteTimeout: 30 * 24 * time.Hour})
		times[0], times[1], times[2] = s.Times()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if got != nil {
		t.Fatalf("login within the maxima: %v", got)
	}
	now := b.clock.Now()
	if !times[1].Equal(now.Add(7*24*time.Hour)) || !times[2].Equal(now.Add(30*24*time.Hour)) {
		t.Fatalf("idle expiry %v, absolute %v; want now+7d and now+30d", times[1], times[2])
	}
	// Exactly at the maximum is allowed; a nanosecond above is not.
	h = b.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = b.m.Session(r).Login(r.Context(), "alice", cloakroom.LoginOptions{IdleTimeout: 7*24*time.Hour + 1, AbsoluteTimeout: 30 * 24 * time.Hour})
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if !errors.Is(got, cloakroom.ErrInvalidInput) {
		t.Fatalf("idle timeout a nanosecond above the maximum: %v, want ErrInvalidInput", got)
	}
}

func TestResponseControllerReachesTheWriter(t *testing.T) {
	a := newApp(t, nil)
	var flushErr error
	h := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flushErr = http.NewResponseController(w).Flush()
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if flushErr != nil || !w.Flushed {
		t.Fatalf("Flush through the middleware: %v, flushed %v", flushErr, w.Flushed)
	}
}

func TestConfigProblemsListedTogether(t *testing.T) {
	_, err := cloakroom.New(cloakroom.Config{
		CookieDomain:  "example.com",
		SameSite:      http.SameSiteNoneMode,
		IdleTimeout:   24 * time.Hour,
		TouchInterval: -1,
	})
	if !errors.Is(err, cloakroom.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"Store is required", "__Host-", "SameSite=None", "IdleTimeout", "TouchInterval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	if _, err := cloakroom.New(cloakroom.Config{Store: ms, CookieName: "bad name;"}); err == nil {
		t.Error("an invalid cookie name was accepted")
	}
}

func TestOldTokenDeadAfterRenew(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	a.do("POST", "/put?k=role&v=admin", token)
	w := a.do("POST", "/renew", token)
	c := sessionCookie(w)
	if c == nil || c.Value == token {
		t.Fatal("Renew did not issue a new token")
	}
	if a.whoami(token) != "user=" {
		t.Fatal("old token alive after Renew")
	}
	if got := a.do("GET", "/get?k=role", c.Value).Body.String(); got != "admin" {
		t.Fatalf("value after Renew = %q, want admin", got)
	}
}

func TestOnLoadReportsEachLookup(t *testing.T) {
	var mu sync.Mutex
	got := map[cloakroom.LoadOutcome]int{}
	a := newApp(t, func(c *cloakroom.Config) {
		c.OnLoad = func(r *http.Request, o cloakroom.LoadOutcome, took time.Duration) {
			mu.Lock()
			got[o]++
			mu.Unlock()
		}
	})
	token := a.login("alice")
	a.whoami(token)
	a.whoami("")                   // no cookie: no lookup
	a.whoami("malformed")          // not a token: no lookup
	a.do("POST", "/logout", token) // found
	a.whoami(token)                // missing
	a.store.fail.Store(true)
	a.whoami(token) // failed
	want := map[cloakroom.LoadOutcome]int{cloakroom.LoadFound: 2, cloakroom.LoadMissing: 1, cloakroom.LoadFailed: 1}
	for o, n := range want {
		if got[o] != n {
			t.Errorf("%s lookups = %d, want %d (all: %v)", o, got[o], n, got)
		}
	}
}

// TestCookieSent: a well-formed session cookie counts as sent whatever the
// store says of it (live, ended, or unchecked); no cookie or a malformed one
// does not.
func TestCookieSent(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	check := func(name, cookie, want string) {
		t.Helper()
		if got := a.do("GET", "/cookie-sent", cookie).Body.String(); got != want {
			t.Errorf("%s: CookieSent() = %s, want %s", name, got, want)
		}
	}
	check("no cookie", "", "false")
	check("malformed", "malformed", "false")
	check("live", token, "true")
	a.do("POST", "/logout", token)
	check("ended", token, "true")
	a.store.fail.Store(true)
	check("store failing", token, "true")
}

// TestVaryIsAddedTo: the middleware adds Cookie to a handler's Vary and
// never replaces it, so a shared cache keeps variants by encoding apart.
func TestVaryIsAddedTo(t *testing.T) {
	ms := memstore.New(memstore.Config{})
	t.Cleanup(func() { ms.Close() })
	m, err := cloakroom.New(cloakroom.Config{Store: ms, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ set, want []string }{
		{nil, []string{"Cookie"}},
		{[]string{"Accept-Encoding"}, []string{"Accept-Encoding", "Cookie"}},
		{[]string{"Accept-Encoding, cookie"}, []string{"Accept-Encoding, cookie"}},
		{[]string{"*"}, []string{"*"}},
	} {
		h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=60")
			for _, v := range tc.set {
				w.Header().Add("Vary", v)
			}
			io.WriteString(w, "body")
		}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if got := w.Header().Values("Vary"); !slices.Equal(got, tc.want) {
			t.Errorf("handler Vary %q: response Vary %q, want %q", tc.set, got, tc.want)
		}
	}
}
