package vault_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/vault"
)

// TestVaultUsersAreNotLocalAccounts: the app's users choose their own
// names. One who registers in the app as "alice" must not become the
// gateway's local account alice: not list or end her sessions, not reach
// other routes under her name.
func TestVaultUsersAreNotLocalAccounts(t *testing.T) {
	st := newStack(t, stackOptions{route: func(r *vault.Route) { r.UserClaim = "username" }})
	if err := st.accounts.Add(t.Context(), "alice", "local-password-1", []string{"admin"}, "alice@corp.example"); err != nil {
		t.Fatal(err)
	}
	local := st.browser()
	if r := local.do("POST", "/auth/login", "application/json", `{"username":"alice","password":"local-password-1"}`); r.status != http.StatusOK {
		t.Fatalf("local login: %d %s", r.status, r.body)
	}
	app := st.browser()
	if r := app.register("alice"); r.status != http.StatusCreated {
		t.Fatalf("register in the app: %d %s", r.status, r.body)
	}
	session := app.do("GET", "/auth/session", "", "").json(t)
	if session["user"] == "alice" {
		t.Errorf("the app's user alice has the local account's user ID")
	}
	devices := app.do("GET", "/auth/sessions", "", "")
	if strings.Count(devices.body, `"handle"`) != 1 {
		t.Fatalf("the app's user sees %d sessions: %s", strings.Count(devices.body, `"handle"`), devices.body)
	}
	if app.whoami() != "alice" {
		t.Fatal("the app's user lost its own session")
	}
	if r := local.do("GET", "/auth/session", "", ""); r.status != http.StatusOK {
		t.Fatalf("the local account's session: %d", r.status)
	}
}
