package forwardauth_test

import (
	"flag"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var traefikBin = flag.String("traefik", "", "Traefik binary for TestThroughTraefik (forwardauth/build-traefik.sh builds it; make test-traefik); empty skips it")

// startTraefik runs Traefik with the documented dynamic configuration
// (testdata/traefik.yml, as docs/deploy.md shows it) in front of s and app,
// and waits until it routes to cloakroom.
func startTraefik(t *testing.T, s *stack, app string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	conf := substitute(t, readConfig(t, "traefik.yml"), docCloakroomAddr, hostOf(s.srv.URL), docAppAddr, hostOf(app),
		"Host(`app.example.com`)", "Host(`127.0.0.1`)")
	dynamic := filepath.Join(dir, "dynamic.yml")
	if err := os.WriteFile(dynamic, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "traefik.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(*traefikBin,
		"--entryPoints.web.address="+listen, "--providers.file.filename="+dynamic,
		"--global.checkNewVersion=false", "--global.sendAnonymousUsage=false", "--log.level=ERROR")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Traefik: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logFile.Close() })
	base := "http://" + listen
	// The file provider loads after the entry point listens: ready once
	// the sign-in page comes through.
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(base + "/auth/login")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("Traefik does not route to cloakroom at %s (last: %v):\n%s", base, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Through a real Traefik configured as docs/deploy.md shows: sign-in
// through the proxy, the app reached with the identity the decision
// vouched for (client-sent copies replaced), roles and public paths,
// cross-site and token-less unsafe requests refused, logout ending access
// at once. (Traefik cannot replace the app's Cookie header: the app gets
// the session cookie, as the doc says, so that is not checked here.)
func TestThroughTraefik(t *testing.T) {
	if *traefikBin == "" {
		t.Skip("pass -traefik=<binary> (make test-traefik builds Traefik and runs this)")
	}
	s := newStack(t, nil, nil)
	app := newApp(t)
	base := startTraefik(t, s, app.URL)
	c := newClient(t, base, "")

	// The sign-in redirect is absolute, on Traefik's host: Traefik would
	// resolve a relative one against cloakroom's address.
	nav := c.do("GET", "/reports?year=2025&q=x", "", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	if want := base + loginLocation("/reports?year=2025&q=x"); nav.status != http.StatusFound || nav.header.Get("Location") != want {
		t.Fatalf("navigation without a session: %d, Location %q; want 302 to %q", nav.status, nav.header.Get("Location"), want)
	}
	if script := c.do("GET", "/reports", "", "Accept", "application/json"); script.status != http.StatusUnauthorized || !strings.Contains(script.body, "login_url") {
		t.Fatalf("script without a session: %d %s; want 401 JSON with the login URL", script.status, script.body)
	}

	pub := c.do("GET", "/public/logo", "", "X-Forwarded-User", "mallory", "X-Forwarded-Amr", "forged")
	if pub.status != http.StatusOK {
		t.Fatalf("public path: %d %s", pub.status, pub.body)
	}
	assertIdentity(t, pub.app(), "", "", "", "", nil)

	cookie, csrf := c.login("alice")
	got := c.do("GET", "/reports", "", "Cookie", cookie,
		"X-Forwarded-User", "mallory", "X-Forwarded-Groups", "admin",
		"X-Forwarded-Email", "mallory@evil.example", "X-Forwarded-Amr", "forged-hwk", "Authorization", "Bearer forged")
	if got.status != http.StatusOK {
		t.Fatalf("signed-in request: %d %s", got.status, got.body)
	}
	if sc := got.header["Set-Cookie"]; len(sc) > 0 {
		t.Fatalf("a request through forward auth set cookies: %v", sc)
	}
	assertIdentity(t, got.app(), "alice", "alice@example.com", "dev", "pwd", s)

	if adm := c.do("GET", "/admin/users", "", "Cookie", cookie); adm.status != http.StatusForbidden {
		t.Fatalf("alice on /admin/: %d; want 403", adm.status)
	}
	if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); x.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d %s; want 403", x.status, x.body)
	}
	if x := c.do("POST", "/reports", "a=1", "Cookie", cookie); x.status != http.StatusForbidden {
		t.Fatalf("POST with neither Fetch Metadata, Origin nor token: %d; want 403", x.status)
	}
	if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Sec-Fetch-Site", "same-origin"); x.status != http.StatusOK || x.app().Method != "POST" {
		t.Fatalf("same-origin POST: %d %s; want it at the app", x.status, x.body)
	}
	if x := c.do("DELETE", "/reports/1", "", "Cookie", cookie, cloakroomCSRF, csrf); x.status != http.StatusOK {
		t.Fatalf("DELETE with the X-CSRF-Token header: %d %s", x.status, x.body)
	}

	if out := c.do("POST", "/auth/logout", "", "Cookie", cookie, cloakroomCSRF, csrf, "Accept", "application/json"); out.status >= 300 {
		t.Fatalf("logout through the proxy: %d %s", out.status, out.body)
	}
	if after := c.do("GET", "/reports", "", "Cookie", cookie, "Accept", "application/json"); after.status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d %s; want 401", after.status, after.body)
	}
}
