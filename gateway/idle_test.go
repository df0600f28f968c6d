package gateway_test

import (
	"net/http"
	"testing"
	"time"
)

// Polling GET /auth/session must not keep a session
// alive. The clock is the injectable one shared by the store, the manager
// and the gateway.
func TestPollingSessionInfoDoesNotExtendIdle(t *testing.T) {
	e := newEnv(t)
	idle := e.manager.Config().IdleTimeout
	poller, active := e.minted("alice"), e.minted("bob")
	deadline := poller.get("/auth/session").json(t)["idle_expires_at"]

	// Poll well inside the idle timeout, more than a TouchInterval apart;
	// the other user does something else at the same moments.
	for _, step := range []time.Duration{idle / 3, idle / 3} {
		e.clock.Advance(step)
		r := poller.get("/auth/session")
		if r.Status != http.StatusOK {
			t.Fatalf("poll: status %d", r.Status)
		}
		if got := r.json(t)["idle_expires_at"]; got != deadline {
			t.Fatalf("polling moved the idle deadline from %v to %v", deadline, got)
		}
		if r := active.get("/auth/sessions"); r.Status != http.StatusOK {
			t.Fatalf("list: status %d", r.Status)
		}
	}
	// Past the first deadline: the poller is logged out, the active user
	// is not.
	e.clock.Advance(idle/3 + time.Second)
	if poller.loggedIn() {
		t.Error("polling /auth/session kept the session alive past its idle deadline")
	}
	if r := active.get("/auth/sessions"); r.Status != http.StatusOK {
		t.Errorf("the active session ended: status %d", r.Status)
	}
}
