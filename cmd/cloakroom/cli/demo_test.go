package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

// demoURLs reads the URLs and passwords the demo printed.
type demoOutput struct {
	app, login, account, metrics string
	passwords                    map[string]string
}

func parseDemo(t *testing.T, out string) demoOutput {
	t.Helper()
	find := func(label string) string {
		m := regexp.MustCompile(regexp.QuoteMeta(label) + `:\s+(http://\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the demo did not print %q:\n%s", label, out)
		}
		// The demo prints localhost; dial the loopback address it bound.
		return strings.Replace(m[1], "//localhost:", "//127.0.0.1:", 1)
	}
	d := demoOutput{
		app: find("App"), login: find("Login page"), account: find("Account & devices"),
		metrics: find("Metrics (admin)"), passwords: map[string]string{},
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+(\w+)\s+role \w+\s+password: (\S+)$`).FindAllStringSubmatch(out, -1) {
		d.passwords[m[1]] = m[2]
	}
	return d
}

func TestDemo(t *testing.T) {
	clearEnv(t)
	data := filepath.Join(t.TempDir(), "demo-data")
	args := []string{"demo", "--data", data, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn"}
	d := start(t, args...)
	d.waitFor(t, "the demo banner", func() bool { return strings.Contains(d.stdout.String(), "Press Ctrl+C") })
	out := parseDemo(t, d.stdout.String())
	if !strings.Contains(d.stdout.String(), data) {
		t.Errorf("the data folder is not printed:\n%s", d.stdout)
	}
	if out.passwords["alice"] == "" || out.passwords["bob"] == "" {
		t.Fatalf("demo passwords not printed:\n%s", d.stdout)
	}
	app := strings.TrimSuffix(out.app, "/")
	c := newClient(t)

	// Not logged in: the app sends a browser to the login page.
	req, _ := http.NewRequest("GET", out.app, nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/auth/login") {
		t.Errorf("GET / without a session: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	if code, body := get(t, c, out.login, ""); code != 200 || !strings.Contains(body, "password") {
		t.Errorf("login page: %d", code)
	}

	cookie, csrf := login(t, c, app, "alice", out.passwords["alice"])
	code, body := get(t, c, app+"/api/me", cookie)
	var me struct {
		User  string
		Admin bool
	}
	json.Unmarshal([]byte(body), &me)
	if code != 200 || me.User != "alice" || !me.Admin {
		t.Fatalf("/api/me as alice: %d %s", code, body)
	}
	if code, body := get(t, c, out.app, cookie); code != 200 || !strings.Contains(body, `src="/app.js"`) {
		t.Errorf("the SPA: %d %.200s", code, body)
	}
	if code, _ := get(t, c, app+"/app.js", cookie); code != 200 {
		t.Errorf("app.js: %d", code)
	}
	if code, _ := get(t, c, out.account, cookie); code != 200 {
		t.Errorf("account page: %d", code)
	}
	if code, body := get(t, c, out.metrics, ""); code != 200 || !strings.Contains(body, "cloakroom_logins_total") {
		t.Errorf("metrics: %d", code)
	}

	// Post a note with the CSRF token, as the SPA does.
	req, _ = http.NewRequest("POST", app+"/api/notes", bytes.NewReader([]byte(`{"text":"hello from alice"}`)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cookie", cookie)
	req.Header.Set("X-CSRF-Token", csrf)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Errorf("POST /api/notes: %d", res.StatusCode)
	}
	if _, body := get(t, c, app+"/api/notes", cookie); !strings.Contains(body, "hello from alice") {
		t.Errorf("notes: %s", body)
	}

	// Logout ends the session.
	req, _ = http.NewRequest("POST", app+"/auth/logout", nil)
	req.Header.Set("Cookie", cookie)
	req.Header.Set("X-CSRF-Token", csrf)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode >= 300 {
		t.Errorf("logout: %d", res.StatusCode)
	}
	if code, _ := get(t, c, app+"/api/me", cookie); code != http.StatusUnauthorized {
		t.Errorf("/api/me after logout: %d, want 401", code)
	}

	if code := d.stop(t); code != 0 {
		t.Fatalf("demo exited %d\n%s", code, d.stderr)
	}
	for _, name := range []string{"cloakroom.db", "admin-token", "static/index.html"} {
		if _, err := os.Stat(filepath.Join(data, name)); err != nil {
			t.Errorf("data folder: %v", err)
		}
	}
	if info, _ := os.Stat(filepath.Join(data, "admin-token")); info != nil && info.Mode().Perm()&0o077 != 0 {
		t.Errorf("admin token mode %v", info.Mode().Perm())
	}

	// A second run keeps the users and says how to reset a password.
	d2 := start(t, args...)
	d2.waitFor(t, "the second banner", func() bool { return strings.Contains(d2.stdout.String(), "Press Ctrl+C") })
	second := d2.stdout.String()
	if !strings.Contains(second, "exist from an earlier run") || !strings.Contains(second, "cloakroom user passwd alice --store sqlite://") {
		t.Errorf("second run:\n%s", second)
	}
	if strings.Contains(second, out.passwords["alice"]) {
		t.Error("the second run printed the password again")
	}
	out2 := parseDemo(t, second)
	cookie, _ = login(t, c, strings.TrimSuffix(out2.app, "/"), "alice", out.passwords["alice"])
	if code, _ := get(t, c, strings.TrimSuffix(out2.app, "/")+"/api/me", cookie); code != 200 {
		t.Errorf("alice after restart: %d", code)
	}
	c.CloseIdleConnections()
	if code := d2.stop(t); code != 0 {
		t.Fatalf("second demo exited %d", code)
	}
}

func TestDemoLabHook(t *testing.T) {
	clearEnv(t)
	var stopped atomic.Bool
	var labURL string
	saved := registerLab
	t.Cleanup(func() { registerLab = saved })
	registerLab = func(l *demoLab) error {
		u, err := l.serve("lab page", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "lab for "+l.gatewayURL.String())
		}))
		if err != nil {
			return err
		}
		labURL = u.String()
		l.say("  Lab:                %s", u)
		l.atStop(func() { stopped.Store(true) })
		return nil
	}
	d := start(t, "demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn")
	d.waitFor(t, "the demo banner", func() bool { return strings.Contains(d.stdout.String(), "Press Ctrl+C") })
	if !strings.Contains(d.stdout.String(), "  Lab:                "+labURL) {
		t.Errorf("the lab's line is not printed:\n%s", d.stdout)
	}
	c := newClient(t)
	if code, body := get(t, c, labURL, ""); code != 200 || !strings.HasPrefix(body, "lab for http://localhost:") {
		t.Errorf("lab server: %d %q", code, body)
	}
	c.CloseIdleConnections()
	if code := d.stop(t); code != 0 {
		t.Fatalf("demo exited %d", code)
	}
	if !stopped.Load() {
		t.Error("the lab's stop function did not run")
	}
	if _, err := c.Get(labURL); err == nil {
		t.Error("the lab server still answers after the demo stopped")
	}

	// A failing hook stops the demo with its error.
	registerLab = func(l *demoLab) error { return errors.New("no lab today") }
	r := run(t, "", "demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn")
	if r.code != 1 || !strings.Contains(r.stderr, "lab: no lab today") {
		t.Errorf("failing hook: exit %d, %s", r.code, r.stderr)
	}
}

func TestListenOrFallback(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	l, err := listenOrFallback(busy.Addr().String(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Addr().String() == busy.Addr().String() || !strings.HasPrefix(l.Addr().String(), "127.0.0.1:") {
		t.Errorf("fallback listener on %s (taken: %s)", l.Addr(), busy.Addr())
	}
	// Other errors are not papered over.
	if _, err := listenOrFallback("192.0.2.1:0", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("listening on an address this machine does not have succeeded")
	}
}
