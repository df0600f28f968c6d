package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// A request carrying the pending sign-in cookie twice has no pending
// sign-in, whichever copy is live: a cookie planted beside the victim's
// (for a longer path, so sent first) would otherwise have the victim's
// browser finish the planter's sign-in with the planter's code, a login
// CSRF into the planter's account.
func TestPendingSignInCookieRepeatedRefused(t *testing.T) {
	e := newTOTPEnv(t)
	bobSecret, _ := e.enrolTOTP("bob") // bob plants
	e.enrolTOTP("alice")
	attacker, victim := e.browser(), e.browser()
	for _, b := range []struct {
		b    *browser
		user string
	}{{attacker, "bob"}, {victim, "alice"}} {
		if r := b.b.postJSON("/auth/login", map[string]string{"username": b.user, "password": password}); r.Status != http.StatusUnauthorized || b.b.pending == "" {
			t.Fatalf("password of %s: %d %s", b.user, r.Status, r.Text)
		}
	}
	c := "__Host-Http-pending="
	planted, own := c+attacker.pending, c+victim.pending

	// The page asking for the code shows the login form, as with none.
	r := victim.get("/auth/second-factor", "Cookie", planted+"; "+own, "Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusOK || !strings.Contains(r.Text, "Sign in again") {
		t.Errorf("code page with the cookie twice: %d, want the login page", r.Status)
	}

	for _, cookie := range []string{planted + "; " + own, own + "; " + planted} {
		victim.pending = "" // the header below carries both
		r := victim.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(bobSecret)}, "Cookie", cookie)
		if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" || victim.token != "" {
			t.Fatalf("Cookie %q with the planter's code: %d %s, session %q; want 401 second_factor_expired and no session", cookie, r.Status, r.Text, victim.token)
		}
	}
	// The planted pending sign-in was not used up: it was never read.
	r = attacker.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(bobSecret)})
	if r.Status != http.StatusOK || r.json(t)["user"] != "bob" {
		t.Fatalf("the planter's own sign-in: %d %s", r.Status, r.Text)
	}
}

// A passkey sign-in answered with the ceremony cookie twice has no
// ceremony: neither copy is read, so neither is used up, and the answer is
// checked against no planted challenge.
func TestPasskeyCeremonyCookieRepeatedRefused(t *testing.T) {
	e := newPasskeyEnv(t)
	attacker, victim := e.browser(), e.browser()
	planted := "__Host-Http-passkey=" + passkeyCookieOf(t, attacker.postJSON("/auth/passkey/begin", map[string]any{})).Value
	own := "__Host-Http-passkey=" + passkeyCookieOf(t, victim.postJSON("/auth/passkey/begin", map[string]any{})).Value
	code := func(r response) string { t.Helper(); s, _ := r.json(t)["error"].(string); return s }
	for _, cookie := range []string{planted + "; " + own, own + "; " + planted} {
		if r := victim.postJSON("/auth/passkey/finish", bogusCredential, "Cookie", cookie); r.Status != http.StatusUnauthorized || code(r) != "passkey_expired" {
			t.Errorf("Cookie %q: %d %s, want 401 passkey_expired", cookie, r.Status, r.Text)
		}
	}
	// Both ceremonies are still there: the first answer to each uses it.
	for _, cookie := range []string{planted, own} {
		if r := victim.postJSON("/auth/passkey/finish", bogusCredential, "Cookie", cookie); r.Status != http.StatusUnauthorized || code(r) != "passkey_refused" {
			t.Errorf("Cookie %q alone: %d %s, want the ceremony live (401 passkey_refused)", cookie, r.Status, r.Text)
		}
	}
}
