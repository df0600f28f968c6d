package vault_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
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

// TestSessionCapturedUnderABareClaimEnds: a session captured before user
// IDs carried the route's prefix (its ID could be a local account's) is
// ended at its next call on the vault route rather than used.
func TestSessionCapturedUnderABareClaimEnds(t *testing.T) {
	keys := testKeys(t)
	st := newStack(t, stackOptions{keys: keys})
	b := st.browser()
	b.register("pia") // the backend's user 1
	token := st.backend.issued()[0]
	placeholder := "cloakroom-vault.old-session-placeholder"
	sealed := keys.Seal([]byte(token), []byte("cloakroom vault\x00/api/\x001\x00"+placeholder))
	rec := httptest.NewRecorder()
	st.manager.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := st.manager.Session(r).Login(r.Context(), "1", cloakroom.LoginOptions{Values: map[string]string{
			"vault.route": "/api/", "vault.placeholder": placeholder, "vault.token": sealed,
		}}); err != nil {
			t.Error(err)
		}
	})).ServeHTTP(rec, httptest.NewRequest("GET", "https://gateway.test/", nil))
	old := &browser{st: st, srv: st.srv, stored: placeholder}
	for _, c := range rec.Result().Cookies() {
		if c.Name == cookieName {
			old.cookie = c.Value
		}
	}
	if !st.sessionAlive(old.cookie) {
		t.Fatal("the old-style session was not created")
	}
	if who := old.whoami(); who != "" {
		t.Fatalf("the old-style session's token was attached: the call acted as %q", who)
	}
	if st.sessionAlive(old.cookie) {
		t.Fatal("the old-style session lives on")
	}
	// The call that ended it did not vouch for its ID either: "1" may be
	// a local account's.
	if u := st.backend.forwardedUser(); u != "" {
		t.Fatalf("the call that ended the old-style session was sent upstream as user %q", u)
	}
}
