package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
)

// TestBusyIsNotThrottled: a server whose password-hashing slots stay taken
// answers 503 "busy" with Retry-After, on the JSON login, the form and the
// password change; 429 stays for a user's failed attempts.
func TestBusyIsNotThrottled(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	csrf := b.csrf()
	e.userDB.busy.Store(true)
	check := func(what string, r response, wantJSON bool) {
		t.Helper()
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: status %d, Retry-After %q; want 503, 1", what, r.Status, r.Header.Get("Retry-After"))
		}
		if wantJSON {
			if body := r.json(t); body["error"] != "busy" {
				t.Errorf("%s: body %v, want error busy", what, body)
			}
		}
	}
	check("JSON login", e.browser().postJSON("/auth/login", map[string]string{"username": "bob", "password": password}), true)
	check("form login", e.browser().postForm("/auth/login", url.Values{"username": {"bob"}, "password": {password}}, "Sec-Fetch-Mode", "navigate"), false)
	check("password change", b.postJSON("/auth/password", map[string]any{"current_password": password, "new_password": "a new long passphrase"}, cloakroom.CSRFHeader, csrf), true)

	logins := e.logs.events("login")
	if len(logins) != 2 {
		t.Fatalf("%d login audit lines, want 2", len(logins))
	}
	for _, l := range logins {
		if l["outcome"] != "busy" {
			t.Errorf("login audit outcome %v, want busy", l["outcome"])
		}
	}
	if changes := e.logs.events("password change"); len(changes) != 1 || changes[0]["outcome"] != "busy" {
		t.Errorf("password change audit lines %v, want one with outcome busy", changes)
	}
	assertMetric(t, e, `cloakroom_logins_total{outcome="busy"}`, 2)
	assertMetric(t, e, `cloakroom_logins_total{outcome="throttled"}`, 0)

	// Busy answers count no failure: bob signs in as soon as it is over.
	e.userDB.busy.Store(false)
	e.browser().login("bob")
}

// TestAuditReasons: the audit log names a refused new password and an
// unknown session handle for what they are, not as wrong credentials or a
// server error.
func TestAuditReasons(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	csrf := b.csrf()
	if r := b.postJSON("/auth/password", map[string]any{"current_password": password, "new_password": "short"}, cloakroom.CSRFHeader, csrf); r.Status != http.StatusBadRequest {
		t.Fatalf("short new password: status %d", r.Status)
	}
	if r := b.postJSON("/auth/password", map[string]any{"current_password": "wrong password!", "new_password": "a new long passphrase"}, cloakroom.CSRFHeader, csrf); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong current password: status %d", r.Status)
	}
	changes := e.logs.events("password change")
	if len(changes) != 2 || changes[0]["outcome"] != "weak_password" || changes[1]["outcome"] != "invalid_credentials" {
		t.Errorf("password change audit lines %v, want weak_password then invalid_credentials", changes)
	}

	if r := b.do(http.MethodDelete, "/auth/sessions/AAAAAAAAAAAAAAAAAAAAAA", "", "", cloakroom.CSRFHeader, csrf); r.Status != http.StatusNotFound {
		t.Fatalf("unknown handle: status %d", r.Status)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/sessions/AAAAAAAAAAAAAAAAAAAAAA", e.token); r.Status != http.StatusNotFound {
		t.Fatalf("admin, unknown handle: status %d", r.Status)
	}
	revocations := e.logs.events("revocation")
	if len(revocations) != 2 {
		t.Fatalf("%d revocation audit lines, want 2", len(revocations))
	}
	for _, l := range revocations {
		if l["outcome"] != "unknown_session" {
			t.Errorf("revocation of an unknown handle: outcome %v, want unknown_session", l["outcome"])
		}
	}
}

// TestPasswordChangeRenewsDeviceCookie: changing one's password ends every
// device token of the account, but the browser that made the change gets
// a new one in the same answer: while an attacker keeps the account's
// budget for unknown devices spent, that browser still gets in and the
// others do not.
func TestPasswordChangeRenewsDeviceCookie(t *testing.T) {
	e := newEnv(t)
	changer, other := e.browser(), e.browser()
	csrf := changer.login("alice")
	other.login("alice")
	oldDevice := changer.device
	if oldDevice == "" || other.device == "" {
		t.Fatal("no device cookie after login")
	}
	const newPassword = "a new long passphrase"
	r := changer.postJSON("/auth/password", map[string]any{"current_password": password, "new_password": newPassword}, cloakroom.CSRFHeader, csrf)
	if r.Status != http.StatusOK {
		t.Fatalf("password change: %d %s", r.Status, r.Text)
	}
	if changer.device == oldDevice {
		t.Fatal("the password change set no new device cookie")
	}
	attacker := e.browser()
	for range 4 { // 3 free failures, then throttled
		attacker.postJSON("/auth/login", map[string]string{"username": "alice", "password": "wrong password!"})
	}
	login := func(b *browser) int {
		return b.postJSON("/auth/login", map[string]string{"username": "alice", "password": newPassword}).Status
	}
	if s := login(other); s != http.StatusTooManyRequests {
		t.Errorf("a browser with a device token from before the change: %d, want 429", s)
	}
	stale := e.browser()
	stale.device = oldDevice
	if s := login(stale); s != http.StatusTooManyRequests {
		t.Errorf("the changer's old device token: %d, want 429", s)
	}
	if s := login(changer); s != http.StatusOK {
		t.Errorf("the changer's browser: %d, want 200", s)
	}
}

// TestWeakNewPasswordRefused: the JSON API and the account page refuse a
// common password with the policy's message.
func TestWeakNewPasswordRefused(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	csrf := b.csrf()
	r := b.postJSON("/auth/password", map[string]any{"current_password": password, "new_password": "password"}, cloakroom.CSRFHeader, csrf)
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.json(t)["message"].(string), "This password is too common: ") {
		t.Errorf("JSON: %d %s", r.Status, r.Text)
	}
	r = b.postForm("/auth/account/password", url.Values{"csrf_token": {csrf}, "current_password": {password}, "new_password": {"        "}}, "Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusBadRequest || !strings.Contains(r.Text, "one character repeated") {
		t.Errorf("page: %d %s", r.Status, r.Text)
	}
}
