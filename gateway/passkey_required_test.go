package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// givePasskey stores a passkey record for user straight in the account
// store, as a registration leaves it (a credential no authenticator here
// holds: what matters is that the account has one).
func (e *env) givePasskey(user string) {
	e.t.Helper()
	stored, err := json.Marshal(map[string]any{"v": 1, "keys": []any{map[string]any{
		"name": "laptop", "created": e.clock.Now().Unix(),
		"credential": map[string]any{"id": "AQIDBA==", "publicKey": "pQECAyYgASFYIA==", "flags": map[string]bool{"userPresent": true}},
	}}})
	if err != nil {
		e.t.Fatal(err)
	}
	s := string(stored)
	if _, err := e.users.Update(e.t.Context(), user, accounts.Change{Passkeys: &s}); err != nil {
		e.t.Fatal(err)
	}
}

// TestPasswordAloneDoesNotDefeatAPasskey: the attack of a phished
// password against an account whose only second factor is a passkey.
// The password opens no session, for a script or a form: only the
// pending step, which offers the passkey and no code (the account has no
// app), and a code sent anyway is refused without a session. An account
// without a factor still signs in with its password.
func TestPasswordAloneDoesNotDefeatAPasskey(t *testing.T) {
	e := newPasskeyEnv(t)
	e.givePasskey("alice")

	attacker := e.browser()
	r := attacker.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r.Status != http.StatusUnauthorized || attacker.loggedIn() || attacker.token != "" {
		t.Fatalf("password alone of a passkey account (JSON): %d %s, logged in %v", r.Status, r.Text, attacker.loggedIn())
	}
	body := r.json(t)
	if body["error"] != "second_factor_required" || body["passkey_begin_url"] != "/auth/second-factor/passkey/begin" ||
		body["second_factor_url"] != "/auth/second-factor" || strings.Contains(body["message"].(string), "authenticator app") {
		t.Errorf("answer = %v", body)
	}
	if attacker.pending == "" {
		t.Fatal("no pending sign-in")
	}
	// No app on this account: a code is refused, and opens nothing.
	r = attacker.postJSON("/auth/second-factor", map[string]string{"code": "123456"})
	if r.Status != http.StatusConflict || r.json(t)["error"] != "no_code_factor" || attacker.loggedIn() {
		t.Errorf("a code for a passkey-only account: %d %s", r.Status, r.Text)
	}

	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	form := e.browser()
	r = form.postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/second-factor" || form.loggedIn() {
		t.Fatalf("password alone of a passkey account (form): %d %s", r.Status, r.Header.Get("Location"))
	}
	page := form.get("/auth/second-factor", nav...)
	if page.Status != http.StatusOK || !strings.Contains(page.Text, `id="passkey-second-factor"`) ||
		strings.Contains(page.Text, `id="second-factor-form"`) || strings.Contains(page.Text, "recovery code") {
		t.Errorf("the pending page of a passkey-only account offers: %d %s", page.Status, page.Text)
	}

	if b := e.browser(); b.login("bob") == "" || !b.loggedIn() {
		t.Error("bob has no factor and could not sign in")
	}
}

// TestPendingPageOffersWhatTheAccountHas: an app with recovery codes and
// a passkey, all three; an app whose recovery codes are used up, no
// recovery code.
func TestPendingPageOffersWhatTheAccountHas(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWithAccounts(t, func(c *accounts.Config) {
		c.Passkeys = accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}}
		c.Sealer = keys
	})
	e.enrolTOTP("alice")
	e.givePasskey("alice")
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	b := e.browser()
	b.postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}}, nav...)
	page := b.get("/auth/second-factor", nav...)
	for _, want := range []string{`id="second-factor-form"`, "recovery codes", `id="passkey-second-factor"`} {
		if !strings.Contains(page.Text, want) {
			t.Errorf("app, recovery codes and passkey: the page lacks %s", want)
		}
	}
	r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if body := r.json(t); body["passkey_begin_url"] == nil || !strings.Contains(body["message"].(string), "authenticator app") {
		t.Errorf("JSON answer: %v", body)
	}
}

// TestPasswordOnlySessionCannotEndThePasskeySessions: a session signed in
// with the password before the account's first passkey is a session of
// before the factor: it cannot end the user's other sessions or another
// device's, as with an app.
func TestPasswordOnlySessionCannotEndThePasskeySessions(t *testing.T) {
	e := newPasskeyEnv(t)
	passwordOnly, other := e.browser(), e.browser()
	csrf := passwordOnly.login("alice")
	other.login("alice")
	target := other.currentHandle(t)
	e.givePasskey("alice")

	r := passwordOnly.do(http.MethodPost, "/auth/sessions/revoke-others", "", "", "X-CSRF-Token", csrf)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "second_factor_required" || !strings.Contains(r.Text, "passkey") {
		t.Errorf("revoke-others from a password-only session: %d %s", r.Status, r.Text)
	}
	r = passwordOnly.do(http.MethodDelete, "/auth/sessions/"+target, "", "", "X-CSRF-Token", csrf)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "second_factor_required" {
		t.Errorf("ending another device from a password-only session: %d %s", r.Status, r.Text)
	}
	if !other.loggedIn() {
		t.Error("a refused revoke ended the other session")
	}
	// It may still end itself.
	if r := passwordOnly.do(http.MethodDelete, "/auth/sessions/"+passwordOnly.currentHandle(t), "", "", "X-CSRF-Token", csrf); r.Status != http.StatusNoContent {
		t.Errorf("ending itself: %d %s", r.Status, r.Text)
	}
}
