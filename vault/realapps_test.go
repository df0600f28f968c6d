package vault_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/vault"
)

// noFetchMetadata removes what browsers add and API clients (curl,
// newman, mobile apps) do not send: with neither Sec-Fetch-Site nor
// Origin, CrossOriginProtection lets a request through and the session
// layer asks for a proof that it is not forged.
var noFetchMetadata = []string{"Sec-Fetch-Site", "", "Sec-Fetch-Mode", ""}

// An unchanged API client sends its token (the placeholder) and nothing
// else: the placeholder proves the call is not forged, so every call works
// without Origin or X-CSRF-Token. The same write on the cookie alone is
// refused; a sign-in with the cookie of an earlier one is a capture the
// cookie lends nothing to, so it works too.
func TestPlaceholderProvesTheCallIsNotForged(t *testing.T) {
	st := newStack(t, stackOptions{})
	client := st.browser()
	if r := client.do("POST", "/api/users", "application/json",
		`{"user":{"email":"ann@example.com","password":"pw-ann","username":"ann"}}`, noFetchMetadata...); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	client.keep(client.do("POST", "/api/users/login", "application/json", `{"user":{"email":"ann@example.com","password":"pw-ann"}}`, noFetchMetadata...))
	if !strings.HasPrefix(client.stored, "cloakroom-vault.") || client.cookie == "" {
		t.Fatalf("the client holds %q and cookie %q, want a placeholder and a session", client.stored, client.cookie)
	}
	write := func(b *browser, extra ...string) response {
		return b.do("PUT", "/api/user", "application/json", `{"user":{"bio":"hello"}}`, append(append([]string{}, noFetchMetadata...), extra...)...)
	}
	if r := write(client); r.status != http.StatusOK {
		t.Fatalf("a write with the placeholder: %d %s", r.status, r.body)
	}
	if got := st.backend.lastAuth; !strings.HasPrefix(got, "Token eyJ") {
		t.Fatalf("the backend got Authorization %q, want the vaulted token", got)
	}
	cookieOnly := &browser{st: st, srv: st.srv, cookie: client.cookie}
	if r := write(cookieOnly); r.status != http.StatusForbidden {
		t.Errorf("a write on the cookie alone: %d %s, want 403", r.status, r.body)
	}
	// Another session's placeholder proves nothing for this cookie.
	other := st.browser()
	other.register("bob")
	forged := &browser{st: st, srv: st.srv, cookie: client.cookie, stored: other.stored}
	if r := write(forged); r.status != http.StatusForbidden {
		t.Errorf("a write with another session's placeholder: %d, want 403", r.status)
	}
	// A wrong X-CSRF-Token is refused even with the placeholder.
	if r := write(client, "X-CSRF-Token", "wrong"); r.status != http.StatusForbidden {
		t.Errorf("a write with the placeholder and a wrong CSRF token: %d, want 403", r.status)
	}
	relogin := &browser{st: st, srv: st.srv, cookie: client.cookie}
	if r := relogin.do("POST", "/api/users/login", "application/json", `{"user":{"email":"ann@example.com","password":"pw-ann"}}`, noFetchMetadata...); r.status != http.StatusOK {
		t.Errorf("a sign-in on the cookie of an earlier one: %d %s", r.status, r.body)
	}
}

// testClock is a settable clock for the store, the sessions and the
// sign-ins.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// Only calls that carry the placeholder are use of a vaulted session: an
// SPA that has forgotten its token (its logout cleared storage) keeps
// loading pages and calling public endpoints on the cookie, and the
// session still ends at its idle deadline.
func TestOnlyPlaceholderCallsKeepAVaultSessionAlive(t *testing.T) {
	clock := newTestClock()
	st := newStack(t, stackOptions{now: clock.Now})
	b := st.browser()
	if r := b.register("ann"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	b.stored = "" // the SPA's logout
	for range 6 {
		clock.Advance(5 * time.Minute)
		b.do("GET", "/api/articles", "", "")
		b.do("GET", "/auth/session", "", "")
		b.do("GET", "/", "", "", "Sec-Fetch-Mode", "navigate")
	}
	clock.Advance(time.Minute) // 31 minutes after the sign-in
	if st.sessionAlive(b.cookie) {
		t.Fatal("calls without the placeholder kept the session past its idle deadline")
	}

	// With the placeholder, calls are use.
	b = st.browser()
	b.login("ann")
	for range 6 {
		clock.Advance(5 * time.Minute)
		if got := b.whoami(); got != "ann" {
			t.Fatalf("a call with the placeholder: %q", got)
		}
	}
	if !st.sessionAlive(b.cookie) {
		t.Fatal("calls with the placeholder did not keep the session alive")
	}
}

// With EndForgotten, the first call of the SPA's own script without the
// placeholder ends the session: after a storage-only logout, the old
// placeholder with the browser's cookie is worth nothing and
// /auth/session answers 401. Navigations, cross-site requests and an old
// tab's placeholder do not end it; without the option nothing does.
func TestEndForgottenEndsTheSessionAtTheSPAsNextCall(t *testing.T) {
	endForgotten := func(r *vault.Route) { r.EndForgotten = true }
	st := newStack(t, stackOptions{route: endForgotten})
	b := st.browser()
	if r := b.register("ann"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	placeholder := b.stored
	keeps := []struct {
		name  string
		extra []string
	}{
		{"a navigation", []string{"Authorization", "", "Sec-Fetch-Mode", "navigate"}},
		{"a cross-site request", []string{"Authorization", "", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "no-cors"}},
		{"a request without Fetch Metadata", []string{"Authorization", "", "Sec-Fetch-Site", "", "Sec-Fetch-Mode", ""}},
		{"an old tab's placeholder", []string{"Authorization", "Token cloakroom-vault.AAAAAAAAAAAAAAAAAAAAAAAA"}},
	}
	for _, k := range keeps {
		b.do("GET", "/api/articles", "", "", k.extra...)
		if !st.sessionAlive(b.cookie) {
			t.Fatalf("%s ended the session", k.name)
		}
	}
	if got := b.whoami(); got != "ann" {
		t.Fatalf("before the logout: %q", got)
	}
	b.stored = "" // the SPA's logout: it forgets the token, nothing else
	cookie := b.cookie
	if r := b.do("GET", "/api/articles", "", ""); r.status != http.StatusOK {
		t.Fatalf("the SPA's public call after its logout: %d", r.status)
	}
	if st.sessionAlive(cookie) {
		t.Fatal("the SPA's call without its token left the session alive")
	}
	stolen := &browser{st: st, srv: st.srv, cookie: cookie, stored: placeholder}
	if got := stolen.whoami(); got != "" {
		t.Errorf("the old placeholder with the browser's cookie is still %q", got)
	}
	if r := stolen.do("GET", "/auth/session", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("/auth/session after the SPA's logout: %d, want 401", r.status)
	}

	// "Token null", as some SPAs send after their logout, is no placeholder.
	b = st.browser()
	b.login("ann")
	b.stored = "null"
	b.do("GET", "/api/articles", "", "")
	if st.sessionAlive(b.cookie) {
		t.Error(`"Token null" left the session alive`)
	}

	// Without the option the call leaves the session to its idle deadline.
	plain := newStack(t, stackOptions{})
	b = plain.browser()
	b.register("ann")
	b.stored = ""
	b.do("GET", "/api/articles", "", "")
	if !plain.sessionAlive(b.cookie) {
		t.Error("without EndForgotten a call without the placeholder ended the session")
	}
}

// EndForgotten needs the placeholder on every call; AttachOnCookie does
// not ask for it.
func TestEndForgottenRefusesAttachOnCookie(t *testing.T) {
	r := defaultRoute()
	r.EndForgotten, r.AttachOnCookie = true, true
	if _, err := vault.NewSessionRules([]vault.Route{r}); err == nil || !strings.Contains(err.Error(), "EndForgotten") {
		t.Fatalf("EndForgotten with AttachOnCookie: %v", err)
	}
}

// A capture names its path with or without a trailing slash, as backends
// redirect one to the other; a capture request redirected to a path no
// capture names is logged, because that sign-in will not be captured.
func TestCapturesMatchWithOrWithoutTheTrailingSlash(t *testing.T) {
	st := newStack(t, stackOptions{route: func(r *vault.Route) {
		c, err := vault.ParseCapture("POST /api/signup user.token")
		if err != nil {
			t.Fatal(err)
		}
		r.Capture = append(r.Capture, c)
	}})
	b := st.browser()
	r := b.do("POST", "/api/users/", "application/json", `{"user":{"email":"ann@example.com","password":"pw-ann","username":"ann"}}`)
	b.keep(r)
	if r.status != http.StatusCreated || !strings.HasPrefix(b.stored, "cloakroom-vault.") || b.cookie == "" {
		t.Fatalf("register at /api/users/ under the capture of /api/users: %d, stored %q, cookie %q", r.status, b.stored, b.cookie)
	}
	if got := b.whoami(); got != "ann" {
		t.Fatalf("after the capture: %q", got)
	}
	client := &http.Client{Transport: st.srv.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req := st.browser().request("POST", "/api/signup", "application/json", `{}`)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("signup: %d, want the backend's 307", res.StatusCode)
	}
	logs := st.logs.String()
	if !strings.Contains(logs, "redirected to a path no capture names") || !strings.Contains(logs, "POST /api/signup/new") {
		t.Errorf("no warning for a capture redirected away: %s", logs)
	}
}
