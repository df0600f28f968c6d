package cli

import (
	"strings"
	"testing"
)

// The DBSC settings fail closed: requiring bound sessions without a key,
// a key file others can read, a key too short or not base64, a lifetime
// under 10 s, are refused; a good key turns binding on.
func TestDBSCSettings(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "dbsc.key", "# bound cookies\n"+strings.Repeat("QUJD", 11)+"\n", 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--require-bound-session", "admin"}, "--require-bound-session and --require-bound-path need --dbsc-key-file"},
		{[]string{"--require-bound-path", "/admin/"}, "need --dbsc-key-file"},
		{[]string{"--dbsc-cookie-lifetime", "5m"}, "--dbsc-cookie-lifetime is set but --dbsc-key-file is not"},
		{[]string{"--dbsc-key-file", writeFile(t, dir, "open.key", strings.Repeat("QUJD", 11)+"\n", 0o644)}, "readable by every user"},
		{[]string{"--dbsc-key-file", writeFile(t, dir, "short.key", "QUJD\n", 0o600)}, "not standard base64 of at least 32 bytes"},
		{[]string{"--dbsc-key-file", writeFile(t, dir, "two.key", "QUJD\nQUJD\n", 0o600)}, "want one line of base64"},
		{[]string{"--dbsc-key-file", good, "--dbsc-cookie-lifetime", "5s"}, "at least 10s"},
		{[]string{"--dbsc-key-file", good, "--require-bound-path", "admin"}, "want an absolute path prefix"},
	} {
		r := run(t, "", append([]string{"serve", "--check-config", "--store", tempStore(t)}, tc.args...)...)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: stderr lacks %q:\n%s", tc.args, tc.want, r.stderr)
		}
	}
	cfg := defaultConfig()
	cfg.Store = tempStore(t)
	cfg.DBSCKeyFile, cfg.RequireBoundSession = good, []string{"admin"}
	p, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.dbsc == nil || len(p.dbsc.binder.Key) != 33 || p.dbsc.require.Roles[0] != "admin" {
		t.Fatalf("plan: %+v", p.dbsc)
	}
	if !strings.Contains(strings.Join(p.warnings, "\n"), "browsers bind sessions only over HTTPS") {
		t.Fatalf("no warning for binding without HTTPS: %v", p.warnings)
	}
}
