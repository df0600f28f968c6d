package gateway_test

import (
	"net/http"
	"sync"
	"testing"
)

// A double-clicked "log out other devices": the second request, parked
// while the first renewed the session, answers 409 and leaves the cookie
// the first one set alone, so the browser stays logged in.
func TestDoubleRevokeOthersKeepsTheBrowserLoggedIn(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	csrf := b.csrf()

	// The first request to reach the store's Rotate waits there.
	parked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() {
		first := false
		once.Do(func() { first = true })
		if first {
			close(parked)
			<-release
		}
	}
	e.store.beforeRotate.Store(&hook)

	second := *b // the same browser, same cookie: the double click
	done := make(chan response)
	go func() {
		done <- second.do(http.MethodPost, "/auth/sessions/revoke-others", "application/json", "{}", "X-CSRF-Token", csrf)
	}()
	<-parked
	first := b.do(http.MethodPost, "/auth/sessions/revoke-others", "application/json", "{}", "X-CSRF-Token", csrf)
	if first.Status != http.StatusOK || b.token == "" {
		t.Fatalf("the click that went through: %d %s", first.Status, first.Text)
	}
	close(release)
	r := <-done
	if r.Status != http.StatusConflict {
		t.Errorf("the parked click: status %d %s, want 409", r.Status, r.Text)
	}
	if line := sessionCookieLine(r.Header); line != "" {
		t.Errorf("the parked click sets the session cookie: %q", line)
	}
	if r.Header.Get("Clear-Site-Data") != "" {
		t.Errorf("the parked click clears the site's data")
	}
	if !b.loggedIn() {
		t.Error("the browser is logged out after the double click")
	}
}
