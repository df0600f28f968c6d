package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/webauthntest"
)

// parkAfterPasskeyUse holds the first passkey change after it is armed
// once it is stored: for a sign-in, the sign count's compare-and-swap,
// the end of the credential check. The test changes the account before
// letting the sign-in go on to its session.
type parkAfterPasskeyUse struct {
	accounts.Store
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (p *parkAfterPasskeyUse) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	u, err := p.Store.Update(ctx, name, c)
	if err == nil && c.Passkeys != nil && p.armed.CompareAndSwap(true, false) {
		close(p.reached)
		<-p.release
	}
	return u, err
}

// registerSoftPasskey registers a software authenticator's passkey for
// user through the account service.
func (e *env) registerSoftPasskey(user string) *webauthntest.Authenticator {
	e.t.Helper()
	a := webauthntest.New(e.t, "example.com", "https://login.example.com")
	c, err := e.accounts.BeginPasskeyRegistration(e.t.Context(), user)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.accounts.FinishPasskeyRegistration(e.t.Context(), user, "laptop", c.State, a.Create(c.Options)); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// Deterministic: a revocation (the user's sessions, everyone's, a
// disable, a factor reset with the sessions ended) that lands after a
// discoverable passkey sign-in checked the credential and before it
// admits the session makes it fail: the pin the admission is conditioned
// on was taken before the check. Before the fix the pin was taken after
// the check, and a session born of a credential checked before the
// revocation outlived it.
func TestPasskeySignInRacingARevocationFails(t *testing.T) {
	ctx := context.Background()
	changes := []struct {
		name   string
		change func(e *env) error
	}{
		{"revoke-user", func(e *env) error { return e.manager.RevokeUser(ctx, "alice") }},
		{"revoke-everyone", func(e *env) error { _, err := e.manager.RevokeEveryone(ctx); return err }},
		{"disable", func(e *env) error { return e.accounts.Disable(ctx, "alice") }},
		{"delete", func(e *env) error { return e.accounts.Delete(ctx, "alice") }},
		{"roles", func(e *env) error { return e.accounts.SetRoles(ctx, "alice", []string{"dev"}) }},
		{"reset-factors-and-revoke", func(e *env) error {
			if _, err := e.accounts.ResetFactors(ctx, "alice"); err != nil {
				return err
			}
			return e.manager.RevokeUser(ctx, "alice")
		}},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newPasskeyEnv(t)
			park := &parkAfterPasskeyUse{Store: e.users, reached: make(chan struct{}), release: make(chan struct{})}
			e.useAccountStore(park, func(c *accounts.Config) {
				c.Passkeys = accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}}
			})
			a := e.registerSoftPasskey("alice")

			b := e.browser()
			r := b.postJSON("/auth/passkey/begin", map[string]any{})
			if r.Status != http.StatusOK {
				t.Fatalf("begin: %d %s", r.Status, r.Text)
			}
			cookie := passkeyCookieOf(t, r)
			body, _ := json.Marshal(map[string]any{"credential": json.RawMessage(a.Get([]byte(r.Text), 1))})
			park.armed.Store(true)
			b.raceSignIn(t, "passkey sign-in racing "+c.name, park.reached, park.release, func() response {
				return b.postJSONRaw("/auth/passkey/finish", body, "Cookie", cookie.Name+"="+cookie.Value)
			}, func() error { return c.change(e) })
		})
	}
}

// Without a change, the same sign-in goes through: the test above fails
// for the change, not for the wrapper.
func TestPasskeySignInWithSoftAuthenticator(t *testing.T) {
	e := newPasskeyEnv(t)
	a := e.registerSoftPasskey("alice")
	b := e.browser()
	r := b.postJSON("/auth/passkey/begin", map[string]any{})
	cookie := passkeyCookieOf(t, r)
	r = b.postJSON("/auth/passkey/finish", map[string]any{"credential": json.RawMessage(a.Get([]byte(r.Text), 1))},
		"Cookie", cookie.Name+"="+cookie.Value)
	if r.Status != http.StatusOK || !b.loggedIn() {
		t.Fatalf("passkey sign-in: %d %s", r.Status, r.Text)
	}
	if got := b.get("/auth/session").json(t)["user"]; got != "alice" {
		t.Errorf("user %v, want alice", got)
	}
}
