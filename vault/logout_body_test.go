package vault_test

import (
	"net/http"
	"testing"
)

// The app's own logout call ends the session before it is proxied, and
// still goes through once: with a body too, which the gateway holds under
// the session's lifetime on other calls.
func TestAppLogoutWithABodyGoesThrough(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("quinn")
	cookie := b.cookie
	if r := b.do(http.MethodPost, "/api/users/logout", "application/json", `{"all":false}`); r.status != http.StatusNoContent {
		t.Fatalf("logout with a body: %d %s", r.status, r.body)
	}
	if st.sessionAlive(cookie) {
		t.Error("the session outlived the app's logout")
	}
}
