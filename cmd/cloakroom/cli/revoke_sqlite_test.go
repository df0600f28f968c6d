package cli

import (
	"net/http"
	"path/filepath"
	"testing"
)

// TestWarmGatewayRefusesCLIRevocation: the SQLite store of a running
// gateway caches sessions; the cloakroom user and sessions commands write
// the same file through their own connections. A session they end must be
// refused on the gateway's very next request, cache or not.
func TestWarmGatewayRefusesCLIRevocation(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	store := createStore(t, filepath.Join(dir, "gw.db"))
	upstream := echoUpstream(t)
	const password = "a long enough password"
	mustRun(t, password+"\n", "user", "add", "alice", "--password-stdin", "--store", store)
	srv := start(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--store", store, "--upstream", "/api/="+upstream.URL, "--log-format", "json")
	public, _ := srv.listening(t)
	c := newClient(t)

	warmSession := func() string {
		t.Helper()
		cookie, _ := login(t, c, public, "alice", password)
		for i := 0; i < 3; i++ { // the first request fills the cache
			if code, body := get(t, c, public+"/api/x", cookie); code != http.StatusOK {
				t.Fatalf("request %d with a fresh session: %d %s", i, code, body)
			}
		}
		return cookie
	}
	for _, revoke := range [][]string{
		{"sessions", "revoke", "alice"},
		{"user", "disable", "alice"},
	} {
		cookie := warmSession()
		mustRun(t, "", append(revoke, "--store", store)...)
		if code, _ := get(t, c, public+"/api/x", cookie); code != http.StatusUnauthorized {
			t.Fatalf("after `cloakroom %v`: %d, want 401", revoke, code)
		}
	}
}
