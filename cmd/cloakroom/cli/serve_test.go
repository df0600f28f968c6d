package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// echoUpstream answers with the identity headers the gateway sent.
func echoUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"user":          r.Header.Get("X-Forwarded-User"),
			"groups":        r.Header.Get("X-Forwarded-Groups"),
			"authorization": r.Header.Get("Authorization"),
			"cookie":        r.Header.Get("Cookie"),
			"path":          r.URL.Path,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// goroutinesSettle waits until the goroutine count drops to at most want.
func goroutinesSettle(want int) int {
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

func TestServeEndToEnd(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	store := createStore(t, filepath.Join(dir, "gw.db"))
	upstream := echoUpstream(t)
	token := writeFile(t, dir, "admin-token", strings.Repeat("s3cret", 8)+"\n", 0o600)
	www := filepath.Join(dir, "www")
	os.Mkdir(www, 0o755)
	writeFile(t, www, "index.html", "<!doctype html><title>spa</title>", 0o644)
	mustRun(t, "a long enough password\n", "user", "add", "alice", "--role", "admin", "--password-stdin", "--store", store)

	before := runtime.NumGoroutine()
	srv := start(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--store", store, "--upstream", "/api/="+upstream.URL, "--static", www,
		"--admin-token-file", token, "--internal-jwt", "--data-dir", dir, "--upstream-audience", "/api/=notes-api",
		"--log-format", "json")
	public, admin := srv.listening(t)
	c := newClient(t)

	if code, body := get(t, c, admin+"/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, _ := get(t, c, admin+"/readyz", ""); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	if code, body := get(t, c, admin+"/metrics", ""); code != 200 || !strings.Contains(body, "cloakroom_") {
		t.Errorf("/metrics: %d", code)
	}
	if code, _ := get(t, c, public+"/api/x", ""); code != http.StatusUnauthorized {
		t.Errorf("API without a session: %d, want 401", code)
	}

	cookie, csrf := login(t, c, public, "alice", "a long enough password")
	if csrf == "" {
		t.Error("login returned no CSRF token")
	}
	code, body := get(t, c, public+"/api/hello", cookie)
	var seen map[string]string
	json.Unmarshal([]byte(body), &seen)
	if code != 200 || seen["user"] != "alice" || seen["groups"] != "admin" || seen["path"] != "/api/hello" {
		t.Errorf("through the gateway: %d %s", code, body)
	}
	if strings.Contains(seen["cookie"], "__Host-Http-session") {
		t.Error("the session cookie reached the upstream")
	}
	// The internal JWT verifies against the published JWKS.
	_, jwks := get(t, c, public+"/.well-known/jwks.json", "")
	bearer := strings.TrimPrefix(seen["authorization"], "Bearer ")
	claims, err := upstreamjwt.Verify(bearer, []byte(jwks), "notes-api", time.Now()) // the route's --upstream-audience
	if err != nil {
		t.Errorf("internal JWT: %v", err)
	} else if claims.Subject != "alice" {
		t.Errorf("JWT subject %q", claims.Subject)
	}
	if _, err := os.Stat(filepath.Join(dir, jwtKeyFileName)); err != nil {
		t.Errorf("generated JWT key not kept in the data folder: %v", err)
	}
	if code, body := get(t, c, public+"/", cookie); code != 200 || !strings.Contains(body, "<title>spa</title>") {
		t.Errorf("SPA: %d %s", code, body)
	}
	// Tokens never reach the logs.
	value := strings.TrimPrefix(cookie, "__Host-Http-session=")
	if strings.Contains(srv.stderr.String(), value) {
		t.Error("the session token appears in the log")
	}
	if !regexp.MustCompile(`"msg":"login".*"outcome":"success"`).MatchString(srv.stderr.String()) {
		t.Errorf("no login audit event in the log:\n%s", srv.stderr)
	}

	// Graceful shutdown on cancel: exit 0, both listeners closed, and no
	// goroutine left behind.
	c.CloseIdleConnections()
	if code := srv.stop(t); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, srv.stderr)
	}
	if _, err := c.Get(admin + "/healthz"); err == nil {
		t.Error("the admin listener still answers after shutdown")
	}
	if _, err := c.Get(public + "/auth/login"); err == nil {
		t.Error("the public listener still answers after shutdown")
	}
	c.CloseIdleConnections()
	upstream.CloseClientConnections()
	if after := goroutinesSettle(before + 2); after > before+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d before serve, %d after it stopped\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestServeRefusesBadStoreAtStart(t *testing.T) {
	clearEnv(t)
	// Nothing listens on port 1: the store cannot be opened, and serve
	// must say so and exit instead of serving without a store.
	r := run(t, "", "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--store", "postgres://127.0.0.1:1/x?connect_timeout=2")
	if r.code != 1 || !strings.Contains(r.stderr, `err="open postgres://127.0.0.1:1/x?connect_timeout=2: `) {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

func TestServePortInUse(t *testing.T) {
	clearEnv(t)
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	addr := strings.TrimPrefix(busy.URL, "http://")
	r := run(t, "", "serve", "--listen", addr, "--admin-listen", "127.0.0.1:0", "--store", tempStore(t))
	if r.code != 1 || !strings.Contains(r.stderr, "public listener") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

// TestCheckConfigWarnsAsServeDoes: --check-config and serve's start make
// the same checks (validate), so a configuration serve would warn about
// is reported with the same words by --check-config, and one serve would
// refuse at start (a store URL option) is refused by --check-config.
func TestCheckConfigWarnsAsServeDoes(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	store := "sqlite://" + filepath.Join(dir, "gw.db")
	const proxyWarning = "--insecure-http-behind-proxy without --trusted-proxy: every client appears with the proxy's address, so login throttling by address applies to all clients at once"
	const redisWarning = "--store: the Redis connection to redis://cache.internal:6379 is not encrypted; sessions and password hashes cross the network in clear text: use rediss://"
	for _, tc := range []struct {
		args     []string
		warnings []string
	}{
		{[]string{"--store", store}, nil},
		{[]string{"--store", store, "--listen", "0.0.0.0:8080", "--insecure-http-behind-proxy"}, []string{proxyWarning}},
		{[]string{"--store", store, "--insecure-http-behind-proxy", "--trusted-proxy", "10.0.0.0/8"}, nil},
		{[]string{"--store", "redis://cache.internal:6379", "--insecure-http-behind-proxy"}, []string{proxyWarning, redisWarning}},
	} {
		r := run(t, "", append([]string{"serve", "--check-config"}, tc.args...)...)
		var want strings.Builder
		for _, w := range tc.warnings {
			want.WriteString("cloakroom serve: warning: " + w + "\n")
		}
		if r.code != exitOK || r.stdout != "cloakroom serve: configuration OK\n" || r.stderr != want.String() {
			t.Errorf("%q: exit %d\nstdout %q\nstderr %q\nwant   %q", tc.args, r.code, r.stdout, r.stderr, want.String())
		}
	}

	// serve logs the same words at start.
	srv := start(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "", "--store", store, "--insecure-http-behind-proxy", "--log-format", "json")
	srv.listening(t)
	found := false
	for line := range strings.SplitSeq(srv.stderr.String(), "\n") {
		var entry struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Level == "WARN" && entry.Msg == proxyWarning {
			found = true
		}
	}
	if !found {
		t.Errorf("serve did not log the warning --check-config printed:\n%s", srv.stderr)
	}
	srv.stop(t)

	// An option serve's store would refuse is refused by --check-config.
	r := run(t, "", "serve", "--check-config", "--store", "redis://127.0.0.1:6379?prefx=a")
	if r.code != exitFailure || !strings.Contains(r.stderr, `  - --store: redis: unknown option "prefx"`) {
		t.Errorf("a misspelt store option: exit %d\n%s", r.code, r.stderr)
	}
}

// A taken port fails the start before serve creates anything: no store,
// no signing key is left behind by a start that could not listen (the
// demo still running on the same port, say).
func TestServeTakenPortCreatesNothing(t *testing.T) {
	clearEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--listen", taken.Addr().String(), "--admin-listen", ""},
		{"--listen", "127.0.0.1:0", "--admin-listen", taken.Addr().String()},
	} {
		r := run(t, "", append([]string{"serve", "--store", "sqlite://" + filepath.Join(dir, "cloakroom.db"), "--upstream", "/api/=http://127.0.0.1:9", "--internal-jwt", "--data-dir", dir}, args...)...)
		if r.code == exitOK || !strings.Contains(r.stderr, "address already in use") {
			t.Fatalf("serve %v on a taken port: exit %d %s", args, r.code, r.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("serve %v on a taken port left %v in its data folder", args, names)
		}
	}
}
