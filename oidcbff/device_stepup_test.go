package oidcbff_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestDeviceRevokeStepUpForProviderSession: ending one other device is a
// step-up action like ending all others. A user whose provider login is
// old has no password to enter again, so the JSON endpoint answers 403 with
// the provider's login URL and the account page redirects there, as for
// revoke-others; the device's session lives on.
func TestDeviceRevokeStepUpForProviderSession(t *testing.T) {
	var mp *mockProvider
	e := newEnv(t, 1, func([]string) *provider {
		mp = newMockProvider(t)
		return mp.provider
	})
	authTime := e.clock.Now().Add(-time.Hour) // single sign-on on an old provider session
	mp.authorize.Store(ptr(func(url.Values) {
		mp.queue(mockUser{sub: "alice-sub", email: "alice@example.com", authTime: authTime})
	}))
	b, other := e.browser(e.nodes[0]), e.browser(e.nodes[0])
	b.mustLogin()
	other.mustLogin()

	var list struct {
		Sessions []struct {
			Handle  string `json:"handle"`
			Current bool   `json:"current"`
		} `json:"sessions"`
	}
	if r := b.fetch(http.MethodGet, "/auth/sessions"); r.Status != http.StatusOK || json.Unmarshal([]byte(r.Text), &list) != nil {
		t.Fatalf("list sessions: %d %s", r.Status, r.Text)
	}
	handle := ""
	for _, s := range list.Sessions {
		if !s.Current {
			handle = s.Handle
		}
	}
	if handle == "" {
		t.Fatalf("no other session in %+v", list.Sessions)
	}

	// The account page asks a provider session for no password: it has
	// none, and a required field would keep the browser from submitting
	// the form that leads to the provider's step-up.
	if page := b.get("/auth/account"); page.Status != http.StatusOK || strings.Contains(page.Text, `name="password"`) {
		t.Fatalf("account page of an old provider login: %d, asks for a password: %v", page.Status, strings.Contains(page.Text, `name="password"`))
	}

	want := "/auth/login/mock?max_age=300&prompt=login"
	r := b.fetch(http.MethodDelete, "/auth/sessions/"+handle)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" || r.json(t)["login_url"] != want {
		t.Fatalf("revoke a device on an old provider login: %d %s", r.Status, r.Text)
	}
	csrf := b.fetch(http.MethodGet, "/auth/session").json(t)["csrf_token"].(string)
	page := b.do(http.MethodPost, "/auth/account/revoke", strings.NewReader(url.Values{"csrf_token": {csrf}, "handle": {handle}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	if page.Status != http.StatusSeeOther || page.Header.Get("Location") != want+"&return_to=%2Fauth%2Faccount" {
		t.Fatalf("account page: %d %q %s", page.Status, page.Header.Get("Location"), page.Text)
	}
	if r := other.fetch(http.MethodGet, "/auth/session"); r.Status != http.StatusOK {
		t.Fatalf("the other device's session ended without a step-up: %d", r.Status)
	}
}
