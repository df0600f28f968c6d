package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPasswordOnlySessionCannotChangeTheFactors: a session signed in with
// the password before the account's first passkey (someone who phished
// the password then) re-enters that password for the step-up: it must
// not remove the passkey the user added since (turning the account back
// into a password-only one) nor add a passkey of its own (a factor the
// user's revoke-all would not take away). The step-up's password does
// not replace the factor, as for ending sessions.
func TestPasswordOnlySessionCannotChangeTheFactors(t *testing.T) {
	e := newPasskeyEnv(t)
	attacker := e.browser()
	csrf := attacker.login("alice")
	e.givePasskey("alice")
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}

	r := attacker.postForm("/auth/account/passkeys/remove", url.Values{"csrf_token": {csrf}, "id": {"AQIDBA"}, "password": {password}}, nav...)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Text, "second factor") {
		t.Errorf("removing the user's passkey from a password-only session: %d %s", r.Status, r.Header.Get("Location"))
	}
	if f, err := e.accounts.SignInFactors(t.Context(), "alice"); err != nil || f.Passkeys != 1 {
		t.Errorf("alice's passkeys after the refused removal: %+v %v", f, err)
	}
	r = attacker.postForm("/auth/account/passkeys", url.Values{"csrf_token": {csrf}, "name": {"mine"}, "password": {password}}, nav...)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Text, "second factor") {
		t.Errorf("adding a passkey from a password-only session: %d %s", r.Status, r.Header.Get("Location"))
	}
}
