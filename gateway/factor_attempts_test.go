package gateway_test

import (
	"net/http"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// TestPasskeyBeginsSpendTheCodeAttempts: the attack of someone who has
// the password and guesses codes. Each passkey step begun spends one of
// the pending sign-in's maxCodeAttempts; once they are spent, a code is
// not checked at all (not even a right one): the password is asked
// again, as after three wrong codes, so begins cannot buy a fourth guess.
func TestPasskeyBeginsSpendTheCodeAttempts(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWithAccounts(t, func(c *accounts.Config) {
		c.Passkeys = accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}}
		c.Sealer = keys
	})
	secret, _ := e.enrolTOTP("alice")
	e.givePasskey("alice")
	b := e.browser()
	if r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusUnauthorized || b.pending == "" {
		t.Fatalf("password: %d %s", r.Status, r.Text)
	}
	for i := range 3 {
		if r := b.postJSON("/auth/second-factor/passkey/begin", map[string]string{}); r.Status != http.StatusOK {
			t.Fatalf("passkey begin %d: %d %s", i, r.Status, r.Text)
		}
	}
	r := b.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" || b.loggedIn() {
		t.Fatalf("a code after three passkey steps: %d %s, logged in %v; want the password asked again", r.Status, r.Text, b.loggedIn())
	}
}
