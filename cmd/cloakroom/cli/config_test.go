package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUsageErrorsExit2(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--idle-timeout", "soon"}, "not a duration"},
		{[]string{"serve", "--internal-jwt=maybe"}, "not a boolean"},
		{[]string{"user"}, "missing subcommand"},
		{[]string{"user", "rename", "a"}, `unknown subcommand "rename"`},
		{[]string{"user", "add"}, "missing the user name"},
		{[]string{"user", "add", "a", "b"}, "expected one user name"},
		{[]string{"user", "disable", "--bogus", "a"}, "unknown flag --bogus"},
		{[]string{"sessions", "list"}, "missing the user name"},
		{[]string{"sessions", "kill", "a"}, "unknown subcommand"},
		{[]string{"demo", "--listen", "0.0.0.0:8080"}, "loopback only"},
		{[]string{"version", "x"}, "takes no arguments"},
		{[]string{"help", "nope"}, "unknown command"},
	} {
		r := run(t, "", tc.args...)
		if r.code != 2 {
			t.Errorf("cloakroom %q: exit %d, want 2\nstderr: %s", tc.args, r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("cloakroom %q: stderr lacks %q:\n%s", tc.args, tc.want, r.stderr)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	clearEnv(t)
	r := mustRun(t, "", "help")
	for _, cmd := range []string{"serve", "demo", "user", "sessions", "version"} {
		if !strings.Contains(r.stdout, "  "+cmd) {
			t.Errorf("help does not list %s:\n%s", cmd, r.stdout)
		}
	}
	r = mustRun(t, "", "help", "serve")
	for _, s := range settings {
		if !strings.Contains(r.stdout, "-"+s.name) || !strings.Contains(r.stdout, "$"+s.env()) {
			t.Errorf("help serve lacks -%s or $%s", s.name, s.env())
		}
	}
	if !strings.Contains(r.stdout, "-check-config") {
		t.Error("help serve lacks -check-config")
	}
	for _, args := range [][]string{
		{"help", "demo"}, {"help", "user"}, {"help", "user", "add"}, {"help", "sessions", "revoke"},
		{"serve", "-h"}, {"user", "list", "--help"}, {"--help"},
	} {
		r := run(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "Usage: cloakroom") {
			t.Errorf("cloakroom %q: exit %d, output %q", args, r.code, r.stdout+r.stderr)
		}
	}
	r = mustRun(t, "", "version")
	if !strings.HasPrefix(r.stdout, "cloakroom ") {
		t.Errorf("version printed %q", r.stdout)
	}
}

func TestCheckConfigListsEveryProblem(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	token := writeFile(t, dir, "token", strings.Repeat("x", 40), 0o644)
	r := run(t, "", "serve", "--check-config",
		"--listen", "0.0.0.0:8080",
		"--admin-listen", "10.1.2.3:9090",
		"--upstream", "api-without-equals",
		"--store", "mysql://db/x",
		"--cookie-samesite", "none",
		"--idle-timeout", "2h", "--absolute-timeout", "1h",
		"--admin-token-file", token,
		"--tls-cert", filepath.Join(dir, "cert.pem"),
		"--log-format", "xml",
		"--trusted-origin", "not an origin",
		"--static", filepath.Join(dir, "missing"),
	)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"--listen 0.0.0.0:8080: refusing plain HTTP",
		"--admin-listen 10.1.2.3:9090: not a loopback address",
		`--upstream "api-without-equals"`,
		`--store: unknown scheme "mysql"`,
		"--cookie-samesite none",
		"--absolute-timeout 1h0m0s: must not be shorter than --idle-timeout 2h0m0s",
		"readable by every user",
		"--tls-cert and --tls-key go together",
		`--log-format "xml"`,
		`--trusted-origin "not an origin"`,
		"--static:",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if n := strings.Count(r.stderr, "\n  - "); n < 11 {
		t.Errorf("%d problems listed, want at least 11:\n%s", n, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout: %q", r.stdout)
	}
}

func TestCheckConfigValid(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	static := filepath.Join(dir, "www")
	os.Mkdir(static, 0o755)
	writeFile(t, static, "index.html", "<!doctype html>", 0o644)
	token := writeFile(t, dir, "token", strings.Repeat("t", 40)+"\n", 0o600)
	db := filepath.Join(dir, "gw.db")
	r := run(t, "", "serve", "--check-config", "--store", "sqlite://"+db, "--static", static,
		"--upstream", "/api/=http://127.0.0.1:9000", "--admin-token-file", token,
		"--internal-jwt", "--data-dir", dir, "--public", "/assets/")
	if r.code != 0 || !strings.Contains(r.stdout, "configuration OK") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	// Checking opens nothing and creates nothing.
	for _, name := range []string{"gw.db", jwtKeyFileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("--check-config created %s", name)
		}
	}
}

func TestAdminListenMustBeLoopback(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--admin-listen", "0.0.0.0:9090"}, 1},
		{[]string{"--admin-listen", ":9090"}, 1},
		{[]string{"--admin-listen", "[::]:9090"}, 1},
		{[]string{"--admin-listen", "192.168.1.5:9090", "--admin-allow-remote"}, 1}, // plain HTTP still refused
		{[]string{"--admin-listen", "0.0.0.0:9090", "--admin-allow-remote", "--insecure-http-behind-proxy"}, 0},
		{[]string{"--admin-listen", "[::1]:9090"}, 0},
		{[]string{"--admin-listen", "localhost:9191"}, 0},
		{[]string{"--admin-listen", ""}, 0}, // disabled
	} {
		r := run(t, "", append([]string{"serve", "--check-config"}, tc.args...)...)
		if r.code != tc.code {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, r.code, tc.code, r.stderr)
		}
		if tc.code == 1 && !strings.Contains(r.stderr, "--admin-listen") {
			t.Errorf("%q: the message does not name --admin-listen: %s", tc.args, r.stderr)
		}
	}
}

func TestPublicListenPlainHTTP(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--listen", "127.0.0.1:8080"}, 0},
		{[]string{"--listen", "[::1]:8080"}, 0},
		{[]string{"--listen", "0.0.0.0:8080"}, 1},
		{[]string{"--listen", ":8080"}, 1},
		{[]string{"--listen", "example.com:443"}, 1},
		{[]string{"--listen", "0.0.0.0:8080", "--insecure-http-behind-proxy"}, 0},
		{[]string{"--listen", "no-port"}, 1},
	} {
		r := run(t, "", append([]string{"serve", "--check-config"}, tc.args...)...)
		if r.code != tc.code {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, r.code, tc.code, r.stderr)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	good := strings.Repeat("k", 48)
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"world-readable", good, 0o644, "readable by every user"},
		{"empty", "\n", 0o600, "is empty"},
		{"short", "abc123", 0o600, "use at least 32"},
		{"two-words", strings.Repeat("a", 20) + " " + strings.Repeat("b", 20), 0o600, "one line without spaces"},
	} {
		path := writeFile(t, dir, tc.name, tc.content, tc.mode)
		r := run(t, "", "serve", "--check-config", "--admin-token-file", path)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want 1 and %q", tc.name, r.code, r.stderr, tc.want)
		}
	}
	r := run(t, "", "serve", "--check-config", "--admin-token-file", filepath.Join(dir, "absent"))
	if r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("missing token file: exit %d, %s", r.code, r.stderr)
	}

	// JWT keys: PKCS#8 Ed25519 accepted; anything else, or world-readable,
	// refused.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	ok := writeFile(t, dir, "jwt.pem", keyPEM, 0o600)
	loose := writeFile(t, dir, "jwt-loose.pem", keyPEM, 0o644)
	notPEM := writeFile(t, dir, "jwt.txt", "hello", 0o600)
	up := "/api/=http://127.0.0.1:9000"
	if r := run(t, "", "serve", "--check-config", "--internal-jwt", "--upstream", up, "--jwt-key-file", ok); r.code != 0 {
		t.Errorf("valid key refused: %s", r.stderr)
	}
	for path, want := range map[string]string{loose: "readable by every user", notPEM: "PRIVATE KEY"} {
		r := run(t, "", "serve", "--check-config", "--internal-jwt", "--upstream", up, "--jwt-key-file", path)
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", path, r.code, r.stderr, want)
		}
	}
	r = run(t, "", "serve", "--check-config", "--jwt-key-file", ok)
	if r.code != 1 || !strings.Contains(r.stderr, "--internal-jwt is not") {
		t.Errorf("key without --internal-jwt: exit %d, %s", r.code, r.stderr)
	}
}

// resolveWith parses args for serve and resolves them against env.
func resolveWith(t *testing.T, args []string, env map[string]string) (Config, []error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf := registerSettings(fs, serveSettingNames()...)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cf.resolve(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestPrecedenceFlagsEnvFileDefaults(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "cloakroom.json", `{
		"listen": "127.0.0.1:1001",
		"admin-listen": "127.0.0.1:2001",
		"log-level": "debug",
		"idle-timeout": "10m",
		"upstream": ["/a/=http://127.0.0.1:1", "/b/=http://127.0.0.1:2"],
		"trusted-origin": ["https://sso.example.com"],
		"internal-jwt": true
	}`, 0o600)
	env := map[string]string{
		"CLOAKROOM_CONFIG":       file,
		"CLOAKROOM_LISTEN":       "127.0.0.1:1002",
		"CLOAKROOM_ADMIN_LISTEN": "127.0.0.1:2002",
		"CLOAKROOM_UPSTREAM":     "/c/=http://127.0.0.1:3, /d/=http://127.0.0.1:4",
		"CLOAKROOM_INTERNAL_JWT": "false",
		"CLOAKROOM_LOG_FORMAT":   "", // empty counts as unset
	}
	cfg, problems := resolveWith(t, []string{"--listen", "127.0.0.1:1003", "--trusted-origin", "https://a.example", "--trusted-origin", "https://b.example"}, env)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	for _, c := range []struct{ what, got, want string }{
		{"listen (flag over env over file)", cfg.Listen, "127.0.0.1:1003"},
		{"admin-listen (env over file)", cfg.AdminListen, "127.0.0.1:2002"},
		{"log-level (file over default)", cfg.LogLevel, "debug"},
		{"log-format (default; empty env ignored)", cfg.LogFormat, "text"},
		{"store (default)", cfg.Store, DefaultStore},
		{"upstream (env list replaces file list)", strings.Join(cfg.Upstreams, " "), "/c/=http://127.0.0.1:3 /d/=http://127.0.0.1:4"},
		{"trusted-origin (repeated flag replaces file list)", strings.Join(cfg.TrustedOrigins, " "), "https://a.example https://b.example"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
		}
	}
	if cfg.IdleTimeout != 10*time.Minute || cfg.AbsoluteTimeout != 12*time.Hour {
		t.Errorf("timeouts %v %v, want 10m (file) and 12h (default)", cfg.IdleTimeout, cfg.AbsoluteTimeout)
	}
	if cfg.InternalJWT {
		t.Error("internal-jwt: env false should override file true")
	}

	// --config on the command line beats CLOAKROOM_CONFIG.
	other := writeFile(t, dir, "other.json", `{"log-level": "warn"}`, 0o600)
	cfg, _ = resolveWith(t, []string{"--config", other}, env)
	if cfg.LogLevel != "warn" {
		t.Errorf("--config flag: log-level %q, want warn", cfg.LogLevel)
	}
}

func TestConfigFileProblemsAllReported(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "bad.json", `{
		"listen": 8080,
		"idle-timeout": "a while",
		"upstream": "/api/=http://x",
		"colour": "blue",
		"config": "other.json"
	}`, 0o600)
	_, problems := resolveWith(t, []string{"--config", file}, map[string]string{"CLOAKROOM_ABSOLUTE_TIMEOUT": "forever"})
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{`key "listen": must be a string`, `"a while" is not a duration`, `key "upstream": must be a list`, `unknown key "colour"`, `cannot name another`, `$CLOAKROOM_ABSOLUTE_TIMEOUT: "forever" is not a duration`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if _, problems := resolveWith(t, []string{"--config", filepath.Join(dir, "absent.json")}, nil); len(problems) != 1 {
		t.Errorf("missing file: %v", problems)
	}
	notJSON := writeFile(t, dir, "x.json", `listen = 1`, 0o600)
	if _, problems := resolveWith(t, []string{"--config", notJSON}, nil); len(problems) != 1 || !strings.HasSuffix(problems[0].Error(), "x.json:1:1: invalid character 'l' looking for beginning of value") {
		t.Errorf("not JSON: %v", problems)
	}
}

func TestCheckConfigThroughRunUsesEnvAndFile(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	file := writeFile(t, dir, "c.json", `{"listen": "0.0.0.0:8080"}`, 0o600)
	t.Setenv("CLOAKROOM_CONFIG", file)
	r := run(t, "", "serve", "--check-config")
	if r.code != 1 || !strings.Contains(r.stderr, "--listen 0.0.0.0:8080") {
		t.Fatalf("file value not used: exit %d %s", r.code, r.stderr)
	}
	t.Setenv("CLOAKROOM_LISTEN", "127.0.0.1:8080")
	if r := run(t, "", "serve", "--check-config"); r.code != 0 {
		t.Fatalf("env did not override the file: %s", r.stderr)
	}
	t.Setenv("CLOAKROOM_LISTEN", "0.0.0.0:1")
	if r := run(t, "", "serve", "--check-config", "--listen", "127.0.0.1:8080"); r.code != 0 {
		t.Fatalf("flag did not override env: %s", r.stderr)
	}
}

func TestEverySettingIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		for _, want := range []string{"--" + s.name, s.env()} {
			if !strings.Contains(string(doc), want) {
				t.Errorf("docs/configuration.md does not mention %s", want)
			}
		}
	}
	names := serveSettingNames()
	if !slices.Contains(names, "config") || len(names) != len(settings) {
		t.Error("serve does not take every setting")
	}
}

// TestCheckConfigCatchesWhatServeWouldHitLater: a SQLite file in a folder
// that does not exist (serve would fail) and an upstream under /auth/ (it
// could never be reached) are reported, not called OK.
func TestCheckConfigCatchesWhatServeWouldHitLater(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	r := run(t, "", "serve", "--check-config",
		"--store", "sqlite://"+filepath.Join(dir, "no-such-folder", "gw.db"),
		"--upstream", "/auth/api/=http://127.0.0.1:9000",
		"--upstream", "/api/=http://127.0.0.1:9001",
	)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"no-such-folder does not exist", `--upstream "/auth/api/=http://127.0.0.1:9000": prefix /auth/api/ is under /auth/`} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "/api/=http://127.0.0.1:9001") {
		t.Errorf("the valid route was reported:\n%s", r.stderr)
	}
}

// TestUpstreamAudienceChecked: each --upstream-audience names one route,
// once, with a plain name.
func TestUpstreamAudienceChecked(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	base := []string{"serve", "--check-config", "--store", "sqlite://" + filepath.Join(dir, "gw.db"),
		"--upstream", "/api/=http://127.0.0.1:9000", "--upstream", "/b/=http://127.0.0.1:9001",
		"--internal-jwt", "--data-dir", dir}
	for _, tc := range []struct {
		args []string
		want string // in stderr; "" for valid
	}{
		{[]string{"--upstream-audience", "/api/=notes-api", "--upstream-audience", "/b=billing"}, ""},
		{[]string{"--upstream-audience", "/other/=x"}, `--upstream-audience "/other/=x": no --upstream route /other/`},
		{[]string{"--upstream-audience", "notes-api"}, `--upstream-audience "notes-api": not PREFIX=NAME`},
		{[]string{"--upstream-audience", "/api/="}, `--upstream-audience "/api/=": not PREFIX=NAME`},
		{[]string{"--upstream-audience", "/api/=a b"}, "printable ASCII without spaces"},
		{[]string{"--upstream-audience", "/api/=a", "--upstream-audience", "/api=b"}, "set twice"},
	} {
		r := run(t, "", append(base, tc.args...)...)
		switch {
		case tc.want == "" && r.code != 0:
			t.Errorf("%q: exit %d\nstderr: %s", tc.args, r.code, r.stderr)
		case tc.want != "" && (r.code != 1 || !strings.Contains(r.stderr, tc.want)):
			t.Errorf("%q: exit %d, want 1 with %q\nstderr: %s", tc.args, r.code, tc.want, r.stderr)
		}
	}
	// Without --internal-jwt the audience has nothing to apply to.
	r := run(t, "", "serve", "--check-config", "--store", "sqlite://"+filepath.Join(dir, "gw.db"),
		"--upstream", "/api/=http://127.0.0.1:9000", "--upstream-audience", "/api/=x")
	if r.code != 1 || !strings.Contains(r.stderr, "--upstream-audience needs --internal-jwt") {
		t.Errorf("without --internal-jwt: exit %d\nstderr: %s", r.code, r.stderr)
	}
}
