package gateway_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestLoginAndLogoutAuditedOnce: one login and one logout give one audit
// line each, written by the gateway with the documented fields; the session
// manager, configured by Metrics.ConfigureSessions, does not repeat them.
func TestLoginAndLogoutAuditedOnce(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("alice")
	logins := e.logs.events("login")
	if len(logins) != 1 {
		t.Fatalf("%d login lines, want 1: %v", len(logins), logins)
	}
	hashPrefix := regexp.MustCompile(`^[0-9a-f]{12}$`)
	ev := logins[0]
	if ev["outcome"] != "success" || ev["user"] != "alice" || ev["client_ip"] != "127.0.0.1" || !hashPrefix.MatchString(ev["session"].(string)) {
		t.Errorf("login line %v", ev)
	}
	loginRef := ev["session"]

	if r := b.do(http.MethodPost, "/auth/logout", "", "", "X-CSRF-Token", b.csrf()); r.Status != http.StatusNoContent {
		t.Fatalf("logout: status %d", r.Status)
	}
	logouts := e.logs.events("logout")
	if len(logouts) != 1 {
		t.Fatalf("%d logout lines, want 1: %v", len(logouts), logouts)
	}
	ev = logouts[0]
	if ev["outcome"] != "success" || ev["user"] != "alice" || ev["client_ip"] != "127.0.0.1" || ev["session"] != loginRef {
		t.Errorf("logout line %v, want the session %v the login named", ev, loginRef)
	}
	if n := len(e.logs.events("login")); n != 1 {
		t.Errorf("%d login lines after the logout, want 1", n)
	}
}

// TestLoginIsOneStoreWrite: a login is one store write, the Rotate that
// creates the session with its values (and, over an old session, deletes
// it), whether or not the browser had a session.
func TestLoginIsOneStoreWrite(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name string
		b    *browser
	}{
		{"fresh", e.browser()},
		{"over a live session", e.minted("alice")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			writes, rotates := e.store.writes.Load(), e.store.rotates.Load()
			tt.b.login("alice")
			if w, r := e.store.writes.Load()-writes, e.store.rotates.Load()-rotates; w != 1 || r != 1 {
				t.Errorf("login made %d store writes (%d Rotate), want 1 Rotate", w, r)
			}
			if s := tt.b.get("/auth/session"); s.Status != http.StatusOK || s.json(t)["email"] != "alice@example.com" {
				t.Errorf("after login: status %d %s", s.Status, s.Text)
			}
		})
	}
}

// TestSessionLoadsInMetrics: every session lookup is timed once, through
// the manager's OnLoad; requests without a session cookie make none.
func TestSessionLoadsInMetrics(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("alice") // no cookie yet: no lookup
	b.get("/auth/session")
	b.get("/api/data")
	e.browser().get("/auth/session") // no cookie: no lookup
	metrics := e.adminDo(http.MethodGet, "/metrics", "").Text
	if want := `cloakroom_store_duration_seconds_count{op="load"} 2` + "\n"; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// TestWebSocketWithEndedSessionCrossSite: a cross-site handshake carrying a
// session cookie is refused even when the session has ended: the origin
// check goes by the cookie sent, not by what the store says of it.
func TestWebSocketWithEndedSessionCrossSite(t *testing.T) {
	up := newStreamUpstream(t)
	e := newEnv(t, withStreamRoute(up))
	b := e.minted("alice")
	ended := b.token
	if r := b.do(http.MethodPost, "/auth/logout", "", "", "X-CSRF-Token", b.csrf()); r.Status != http.StatusNoContent {
		t.Fatalf("logout: status %d", r.Status)
	}
	b.token = ended
	hits := up.hits.Load()
	resp, _, conn := b.openWebSocket(t, e.srv, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	conn.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site handshake with an ended session's cookie: status %d, want 403", resp.StatusCode)
	}
	if n := up.hits.Load() - hits; n != 0 {
		t.Errorf("the upstream was contacted %d times", n)
	}
}
