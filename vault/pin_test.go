package vault_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
)

// silentStore is a store that tells no node of the ends it makes (no
// EndNotifier): a node learns of a revocation elsewhere only by looking.
type silentStore struct{ cloakroom.Store }

// TestCaptureKeepsARevocationDuringTheLogin: the browser logs in again
// while its user's sessions are revoked on another node (logout everywhere
// from another device, an administrator). The app checked the password
// before the revocation, so the captured login must not start a session
// after it, even when this node has not heard of the revocation yet (its
// watch of the request's session would cut the call).
func TestCaptureKeepsARevocationDuringTheLogin(t *testing.T) {
	store := silentStore{memstore.New(memstore.Config{})}
	keys, backend := testKeys(t), newJWTBackend()
	deaf := func(c *cloakroom.Config) { c.RecheckInterval = time.Hour }
	st := newStack(t, stackOptions{store: store, keys: keys, backend: backend, manager: deaf})
	other := newStack(t, stackOptions{store: store, keys: keys, backend: backend, manager: deaf})
	b := st.browser()
	b.register("olga") // id 1
	if who := b.whoami(); who != "olga" {
		t.Fatalf("before: %q", who)
	}
	parked, release := make(chan struct{}), make(chan struct{})
	hook := func() {
		backend.answering.Store(nil)
		close(parked)
		<-release
	}
	backend.answering.Store(&hook)
	done := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest("POST", st.srv.URL+"/api/users/login",
			strings.NewReader(`{"user":{"email":"olga@example.com","password":"pw-olga"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Sec-Fetch-Mode", "cors")
		req.Header.Set("Cookie", cookieName+"="+b.cookie)
		req.Header.Set("Authorization", "Token "+b.stored)
		res, err := st.srv.Client().Do(req)
		if err != nil {
			done <- response{status: -1, body: err.Error()}
			return
		}
		defer res.Body.Close()
		done <- response{status: res.StatusCode, header: res.Header}
	}()
	<-parked
	if err := other.manager.RevokeUser(t.Context(), "/api/:1"); err != nil {
		t.Fatal(err)
	}
	close(release)
	r := <-done
	for _, line := range r.header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == cookieName && c.Value != "" && st.sessionAlive(c.Value) {
			t.Fatalf("the login in flight started a session after the user's sessions were revoked (status %d)", r.status)
		}
	}
	if r.status != http.StatusUnauthorized {
		t.Errorf("status %d, want 401: %s", r.status, r.body)
	}
}

// TestCaptureKeepsAGlobalRevocationDuringTheLogin: a fresh browser (no
// session, so no user to pin) signs in while an administrator revokes
// every session on another node. The app checked the password before the
// revocation; the capture must not start a session after it.
func TestCaptureKeepsAGlobalRevocationDuringTheLogin(t *testing.T) {
	store := silentStore{memstore.New(memstore.Config{})}
	keys, backend := testKeys(t), newJWTBackend()
	st := newStack(t, stackOptions{store: store, keys: keys, backend: backend})
	other := newStack(t, stackOptions{store: store, keys: keys, backend: backend})
	if r := st.browser().register("olga"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	fresh := st.browser()
	parked, release := make(chan struct{}), make(chan struct{})
	hook := func() {
		backend.answering.Store(nil)
		close(parked)
		<-release
	}
	backend.answering.Store(&hook)
	done := make(chan response, 1)
	go func() { done <- fresh.login("olga") }()
	<-parked
	if _, err := other.manager.RevokeEveryone(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	r := <-done
	if fresh.cookie != "" && st.sessionAlive(fresh.cookie) {
		t.Fatalf("the login in flight started a session after every session was revoked (status %d)", r.status)
	}
	if r.status != http.StatusUnauthorized {
		t.Errorf("status %d, want 401: %s", r.status, r.body)
	}
	if r := fresh.login("olga"); r.status != http.StatusOK || fresh.whoami() != "olga" {
		t.Fatalf("a login after the revocation: %d %s", r.status, r.body)
	}
}
