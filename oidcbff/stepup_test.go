package oidcbff_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/oidcbff"
)

// TestStepUp: a route (and an account action) that needs a login within
// 10 minutes refuses an older session with 403 JSON (a navigation is
// redirected) naming a login URL with max_age and prompt=login; logging in
// again there opens it. A silent login whose ID token has no auth_time
// never counts as recent: the provider may have reused a session of any
// age. A login started with prompt=login counts at its completion. An ID
// token whose auth_time is older than max_age, in the future, or absent
// when max_age was asked for, is refused.
func TestStepUp(t *testing.T) {
	var mp *mockProvider
	var authTime time.Time // the provider's auth_time for the next login; zero for none
	e := newEnv(t, 1, func([]string) *provider {
		mp = newMockProvider(t)
		return mp.provider
	}, func(c *oidcbff.Config) {
		c.StepUp = []oidcbff.StepUp{{Prefix: "/admin/", MaxAge: 10 * time.Minute}, {Prefix: "/auth/sessions/", MaxAge: 10 * time.Minute}}
	})
	var asked url.Values
	mp.authorize.Store(ptr(func(q url.Values) {
		asked = q
		mp.queue(mockUser{sub: "alice-sub", email: "alice@example.com", authTime: authTime})
	}))
	b := e.browser(e.nodes[0])
	b.mustLogin() // silent single sign-on: no auth_time, no prompt
	if r := b.fetch(http.MethodGet, "/admin/users"); r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" {
		t.Fatalf("silent login without auth_time: %d %s, want 403 reauth_required", r.Status, r.Text)
	}
	if r := b.fetch(http.MethodPost, "/auth/sessions/revoke-others"); r.Status != http.StatusForbidden {
		t.Fatalf("silent login without auth_time, account action: %d %s, want 403", r.Status, r.Text)
	}
	// The same provider, still without auth_time, after a login the
	// gateway started with prompt=login: the provider had to authenticate.
	if r := b.get(e.p.login(t, b, b.startLogin("?prompt=login"))); r.Status != http.StatusSeeOther {
		t.Fatalf("prompt=login: %d %s", r.Status, r.Text)
	}
	if asked.Get("prompt") != "login" {
		t.Fatalf("the provider was asked %v", asked)
	}
	if r := b.fetch(http.MethodGet, "/admin/users"); r.Status != http.StatusOK {
		t.Fatalf("fresh login with prompt=login: %d %s", r.Status, r.Text)
	}

	e.clock.Advance(11 * time.Minute)
	mp.fastForward(11 * time.Minute) // its tokens expire by the same clock
	r := b.fetch(http.MethodGet, "/admin/users")
	want := "/auth/login/mock?max_age=600&prompt=login"
	// 403 like every step-up: the session is valid, its login too old.
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" || r.json(t)["login_url"] != want {
		t.Fatalf("stale login: %d %s, want 403 reauth_required", r.Status, r.Text)
	}
	if nav := b.get("/admin/users"); nav.Status != http.StatusSeeOther || nav.Header.Get("Location") != want {
		t.Fatalf("stale login, navigation: %d %q", nav.Status, nav.Header.Get("Location"))
	}
	if r := b.fetch(http.MethodGet, "/plain/x"); r.Status != http.StatusOK {
		t.Fatalf("other routes need no step-up: %d", r.Status)
	}
	// An account action under a step-up prefix: refused before it acts.
	if r := b.fetch(http.MethodPost, "/auth/sessions/revoke-others"); r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" || r.json(t)["login_url"] != want {
		t.Fatalf("stale login, account action: %d %s", r.Status, r.Text)
	}

	// The provider answers with an old authentication: refused.
	authTime = e.clock.Now().Add(-20 * time.Minute)
	cb := e.p.login(t, b, b.startLogin("?max_age=600&prompt=login"))
	if asked.Get("max_age") != "600" || asked.Get("prompt") != "login" {
		t.Fatalf("the provider was asked %v", asked)
	}
	if r := b.get(cb); r.Status != http.StatusBadRequest {
		t.Fatalf("auth_time older than max_age: %d", r.Status)
	}
	// An auth_time in the future (beyond the clock skew): refused.
	authTime = e.clock.Now().Add(10 * time.Minute)
	if r := b.get(e.p.login(t, b, b.startLogin("?max_age=600&prompt=login"))); r.Status != http.StatusBadRequest {
		t.Fatalf("auth_time in the future: %d", r.Status)
	}
	// No auth_time at all while max_age was asked for: refused.
	authTime = time.Time{}
	if r := b.get(e.p.login(t, b, b.startLogin("?max_age=600"))); r.Status != http.StatusBadRequest {
		t.Fatalf("no auth_time: %d", r.Status)
	}

	// A real re-authentication opens the route.
	authTime = e.clock.Now()
	if r := b.get(e.p.login(t, b, b.startLogin("?max_age=600&prompt=login"))); r.Status != http.StatusSeeOther {
		t.Fatalf("re-authentication: %d %s", r.Status, r.Text)
	}
	if r := b.fetch(http.MethodGet, "/admin/users"); r.Status != http.StatusOK {
		t.Fatalf("after step-up: %d %s", r.Status, r.Text)
	}
	if r := b.fetch(http.MethodPost, "/auth/sessions/revoke-others"); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("account action after step-up: %d %s", r.Status, r.Text)
	}
	for _, bad := range []string{"?max_age=-1", "?max_age=ten", "?prompt=none"} {
		if r := b.get("/auth/login/mock" + bad); r.Status != http.StatusBadRequest {
			t.Errorf("login %s: %d", bad, r.Status)
		}
	}
}

// TestAccountStepUpForProviderSession: ending other sessions needs a recent
// authentication (the gateway's step-up window, 5 minutes). A user who
// signed in through a provider session that authenticated an hour ago has
// no password to enter again: the JSON endpoint answers 403 with the
// provider's login URL (max_age=300, prompt=login) and the account page
// redirects there; after that login, the action goes through.
func TestAccountStepUpForProviderSession(t *testing.T) {
	var mp *mockProvider
	authTime := time.Time{}
	e := newEnv(t, 1, func([]string) *provider {
		mp = newMockProvider(t)
		return mp.provider
	})
	mp.authorize.Store(ptr(func(url.Values) {
		mp.queue(mockUser{sub: "alice-sub", email: "alice@example.com", authTime: authTime})
	}))
	authTime = e.clock.Now().Add(-time.Hour) // single sign-on on an old provider session
	b := e.browser(e.nodes[0])
	b.mustLogin()

	want := "/auth/login/mock?max_age=300&prompt=login"
	r := b.fetch(http.MethodPost, "/auth/sessions/revoke-others")
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" || r.json(t)["login_url"] != want {
		t.Fatalf("revoke others on an old provider login: %d %s", r.Status, r.Text)
	}
	csrf := b.fetch(http.MethodGet, "/auth/session").json(t)["csrf_token"].(string)
	page := b.do(http.MethodPost, "/auth/account/revoke-others", strings.NewReader(url.Values{"csrf_token": {csrf}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	if page.Status != http.StatusSeeOther || page.Header.Get("Location") != want+"&return_to=%2Fauth%2Faccount" {
		t.Fatalf("account page: %d %q", page.Status, page.Header.Get("Location"))
	}

	authTime = e.clock.Now()
	if r := b.get(e.p.login(t, b, b.startLogin("?max_age=300&prompt=login&return_to=/auth/account"))); r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account" {
		t.Fatalf("re-authentication: %d %q", r.Status, r.Header.Get("Location"))
	}
	if r := b.fetch(http.MethodPost, "/auth/sessions/revoke-others"); r.Status != http.StatusOK {
		t.Fatalf("revoke others after re-authentication: %d %s", r.Status, r.Text)
	}
}
