package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
	"github.com/cloakroom/cloakroom/proxy"
)

// TestNoPackagePrefixesInOutput: what the CLI prints names what to fix, not
// the Go package that found it.
func TestNoPackagePrefixesInOutput(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	store := tempStore(t)
	keys := writeFile(t, dir, "vault.keys", "not a key line\n", 0o600)
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"short\n", []string{"user", "add", "carol", "--password-stdin", "--store", store}, "cloakroom user add: password has 5 characters, at least 8 needed\n"},
		{"", []string{"user", "list", "--store", "nonsense"}, "cloakroom user list: --store: no scheme; write sqlite://nonsense for a SQLite file\n"},
		{"", []string{"user", "list", "--store", "redis://127.0.0.1:1"}, "cloakroom user list: connect to redis://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused\n"},
		{"", []string{"serve", "--check-config", "--store", "mysql://db/x"}, `  - --store: unknown scheme "mysql" (supported: postgres, postgresql, redis, rediss, sqlite)` + "\n"},
		{"", []string{"serve", "--check-config", "--upstream", "api-without-equals"}, `  - --upstream "api-without-equals": `},
		{"", []string{"serve", "--check-config", "--upstream", "/api/=http://127.0.0.1:9000", "--vault", "/api/", "--vault-keys-file", keys, "--vault-capture", "GET"}, `  - --vault-capture: capture "GET" is not "METHOD PATH FIELD"`},
	} {
		r := run(t, tc.stdin, tc.args...)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("cloakroom %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), tc.want, r.stderr)
		}
		for _, prefix := range []string{"storeurl:", "proxy:", "accounts:", "vault:", "seal:", "oidcbff:", "cloakroom:"} {
			if strings.Contains(r.stderr, prefix) {
				t.Errorf("cloakroom %s: stderr has the package prefix %q:\n%s", strings.Join(tc.args, " "), prefix, r.stderr)
			}
		}
	}
}

// TestPlainMessageKeepsTheSentinels: the printed message loses the package
// names, the error does not lose its sentinels.
func TestPlainMessageKeepsTheSentinels(t *testing.T) {
	cfg := defaultConfig()
	cfg.Upstreams = []string{"api-without-equals"}
	cfg.Store = "mysql://db/x"
	_, err := validate(cfg)
	if !errors.Is(err, proxy.ErrInvalidRoute) || !errors.Is(err, storeurl.ErrInvalidURL) {
		t.Fatalf("the sentinels are not in the chain: %v", err)
	}
	var got []string
	for _, p := range flatten(err) {
		got = append(got, plainMessage(p))
	}
	want := []string{
		`--upstream "api-without-equals": "api-without-equals" is not PREFIX=URL (for example /api/=http://127.0.0.1:9000)`,
		`--store: unknown scheme "mysql" (supported: postgres, postgresql, redis, rediss, sqlite)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := plainMessage(fmt.Errorf("list users: %w", accounts.ErrStoreUnavailable)); got != "list users: account store unavailable" {
		t.Errorf("an outcome sentinel: %q", got)
	}
}
