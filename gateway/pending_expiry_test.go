package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// TestPendingExpiringDuringAStepMeansSignInAgain: a pending sign-in
// (between the password and the second factor, 5 minutes) that expires
// while a step reads and writes it back is gone, as one that expired
// before: every step answers what the code step answers for a pending
// sign-in that is not there, 401 second_factor_expired (a form: the
// login page saying to sign in again), the pending cookie expired, and
// no session. Before, the failed write back was answered 409 conflict
// ("another attempt is under way"), and a passkey finish without a
// pending sign-in 401 passkey_expired ("try again").
func TestPendingExpiringDuringAStepMeansSignInAgain(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	const pendingLifetime = 5 * time.Minute
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	steps := []struct {
		name string
		// begin: a passkey step is begun first; form: the step is a
		// navigation.
		begin, form bool
		send        func(b *browser) response
	}{
		{"code", false, false, func(b *browser) response {
			return b.postJSON("/auth/second-factor", map[string]string{"code": "123456"})
		}},
		{"code form", false, true, func(b *browser) response {
			return b.postForm("/auth/second-factor", url.Values{"code": {"123456"}}, nav...)
		}},
		{"passkey begin", false, false, func(b *browser) response {
			return b.postJSON("/auth/second-factor/passkey/begin", map[string]string{})
		}},
		{"passkey finish", true, false, func(b *browser) response {
			return b.postJSON("/auth/second-factor/passkey/finish", bogusCredential)
		}},
	}
	for _, st := range steps {
		for _, when := range []string{"before the step", "during the step"} {
			t.Run(st.name+"/"+when, func(t *testing.T) {
				e := newEnvWithAccounts(t, func(c *accounts.Config) {
					c.Passkeys = accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}}
					c.Sealer = keys
				})
				e.enrolTOTP("alice")
				e.givePasskey("alice")
				b := e.browser()
				if r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusUnauthorized || b.pending == "" {
					t.Fatalf("password: %d %s", r.Status, r.Text)
				}
				if st.begin {
					if r := b.postJSON("/auth/second-factor/passkey/begin", map[string]string{}); r.Status != http.StatusOK {
						t.Fatalf("passkey begin: %d %s", r.Status, r.Text)
					}
				}
				if when == "before the step" {
					e.clock.Advance(pendingLifetime)
				} else {
					// The step finds the pending sign-in live; it expires
					// before the step writes it back.
					key := cloakroom.AuxKey("gateway", "pending-sign-in", b.pending)
					var once atomic.Bool
					hook := func(k cloakroom.Key) {
						if k == key && once.CompareAndSwap(false, true) {
							e.clock.Advance(pendingLifetime)
						}
					}
					e.store.afterFindAux.Store(&hook)
				}
				r := st.send(b)
				if r.Status != http.StatusUnauthorized {
					t.Errorf("status %d, want 401: %s", r.Status, r.Text)
				}
				if st.form {
					if !strings.Contains(r.Text, "Sign in again") || !strings.Contains(r.Text, `name="password"`) {
						t.Errorf("a navigation is not shown the login page saying to sign in again: %s", r.Text)
					}
				} else if code := r.json(t)["error"]; code != "second_factor_expired" {
					t.Errorf("error %v, want second_factor_expired: %s", code, r.Text)
				}
				if b.pending != "" {
					t.Error("the pending cookie is not expired")
				}
				if b.token != "" && b.loggedIn() {
					t.Error("a session was started")
				}
			})
		}
	}
}

// TestPendingEnrolmentExpiringDuringTheCode: the same for the pending
// enrolment a role requires (10 minutes): expired while its first code
// is being written back, it is gone (401 second_factor_expired, sign in
// again), not 409.
func TestPendingEnrolmentExpiringDuringTheCode(t *testing.T) {
	e := newTOTPEnv(t, requireSecondFactor("admin"))
	b := e.browser()
	if r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusUnauthorized || b.pending == "" {
		t.Fatalf("password: %d %s", r.Status, r.Text)
	}
	if r := b.get("/auth/second-factor/enrol"); r.Status != http.StatusOK {
		t.Fatalf("enrolment: %d %s", r.Status, r.Text)
	}
	key := cloakroom.AuxKey("gateway", "pending-sign-in", b.pending)
	var once atomic.Bool
	hook := func(k cloakroom.Key) {
		if k == key && once.CompareAndSwap(false, true) {
			e.clock.Advance(accounts.TOTPEnrolmentLifetime)
		}
	}
	e.store.afterFindAux.Store(&hook)
	r := b.postJSON("/auth/second-factor/enrol", map[string]string{"code": "123456"})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" || b.pending != "" {
		t.Errorf("enrolment code as the pending enrolment expires: %d %s, pending cookie %q", r.Status, r.Text, b.pending)
	}
	if b.token != "" && b.loggedIn() {
		t.Error("a session was started")
	}
}
