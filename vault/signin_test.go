package vault_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/signin"
)

// TestVaultSignInsAreHeldToTheCap: a capture is a sign-in like any other:
// the per-user session cap ends the oldest sessions beyond it.
func TestVaultSignInsAreHeldToTheCap(t *testing.T) {
	st := newStack(t, stackOptions{cap: 3})
	if r := st.browser().register("alice"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	var newest *browser
	for range 7 {
		newest = st.browser()
		if r := newest.login("alice"); r.status != http.StatusOK {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
	}
	user := signin.VaultUser("/api/", "1") // the backend's first user ID
	devices, err := st.manager.Devices(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 3 {
		t.Fatalf("%d live sessions of %s after 8 sign-ins, want the cap of 3", len(devices), user)
	}
	if newest.whoami() != "alice" {
		t.Fatal("the newest sign-in did not survive the cap")
	}
}

// TestVaultUserEndsOneDevice: a vault user whose sign-in is older than the
// step-up window cannot end another device's session at once (no
// password here to re-enter: the answer says to sign in again through the
// app, with no re-authentication URL that could never succeed); after
// signing in again through the app, they can.
func TestVaultUserEndsOneDevice(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	st := newStack(t, stackOptions{now: clock})
	laptop, stolen := st.browser(), st.browser()
	if r := laptop.register("alice"); r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	if r := stolen.login("alice"); r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	handle := ""
	list := laptop.do("GET", "/auth/sessions", "", "").json(t)
	for _, d := range list["sessions"].([]any) {
		if dev := d.(map[string]any); dev["current"] == false {
			handle = dev["handle"].(string)
		}
	}
	if handle == "" {
		t.Fatalf("no other session listed: %v", list)
	}
	advance(10 * time.Minute)
	r := laptop.do("DELETE", "/auth/sessions/"+handle, "", "")
	if r.status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" {
		t.Fatalf("ending a device on an old sign-in: %d %s, want 403 reauth_required", r.status, r.body)
	}
	if body := r.json(t); body["reauth_url"] != nil || !strings.Contains(body["message"].(string), "app") {
		t.Fatalf("the step-up answer must send a vault user to the app, not to a password form: %s", r.body)
	}
	if stolen.whoami() != "alice" {
		t.Fatal("the refused request ended the session")
	}
	if page := laptop.do("GET", "/auth/account", "", ""); !strings.Contains(page.body, "sign in again through the app first") || strings.Contains(page.body, `name="password"`) {
		t.Fatalf("the account page must tell a vault user to sign in again through the app, and ask for no password:\n%s", page.body)
	}

	// Signing in again through the app is the step-up.
	if r := laptop.login("alice"); r.status != http.StatusOK {
		t.Fatalf("signing in again: %d %s", r.status, r.body)
	}
	if r := laptop.do("DELETE", "/auth/sessions/"+handle, "", ""); r.status != http.StatusNoContent {
		t.Fatalf("ending a device after signing in again: %d %s", r.status, r.body)
	}
	if stolen.whoami() != "" {
		t.Fatal("the ended device still reaches the app as alice")
	}
	if laptop.whoami() != "alice" {
		t.Fatal("the laptop lost its own session")
	}

	// A token refresh is not a sign-in: the step-up window runs from the
	// capture.
	advance(10 * time.Minute)
	if r := laptop.do("POST", "/auth/sessions/revoke-others", "", ""); r.status != http.StatusForbidden {
		t.Fatalf("revoke-others ten minutes after the sign-in: %d %s, want 403", r.status, r.body)
	}
}
