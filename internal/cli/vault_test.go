package cli

import (
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/seal"
)

func TestCheckConfigVault(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	line, err := seal.NewKeyLine("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := writeFile(t, dir, "vault.keys", line+"\n", 0o600)
	open := writeFile(t, dir, "open.keys", line+"\n", 0o644)
	base := []string{"serve", "--check-config", "--store", "sqlite://" + dir + "/gw.db", "--upstream", "/api/=http://127.0.0.1:9000"}

	ok := append(append([]string{}, base...), "--vault", "/api/", "--vault-keys-file", keys,
		"--vault-capture", "POST /api/users/login user.token", "--vault-capture", "POST /api/users user.token",
		"--vault-header", "Authorization: Token", "--vault-user-claim", "id",
		"--vault-logout", "POST /api/users/logout", "--vault-cookie-only", "/api/", "--vault-strip-param", "token")
	if r := run(t, "", ok...); r.code != 0 {
		t.Fatalf("valid vault configuration refused: %s", r.stderr)
	}

	bad := append(append([]string{}, base...), "--vault", "/api/", "--vault", "/other/", "--vault-keys-file", open,
		"--vault-capture", "POST /elsewhere/login user.token", "--vault-capture", "GET",
		"--vault-header", "Authorization: Two words", "--vault-cookie-only", "/nope/")
	r := run(t, "", bad...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{
		`--vault "/other/": no --upstream route`,
		"--vault-keys-file:",
		`--vault-capture "POST /elsewhere/login user.token": not under a --vault prefix`,
		"--vault-capture: vault: invalid configuration",
		"--vault-header:",
		`--vault-cookie-only "/nope/"`,
		`--vault "/api/": no --vault-capture request`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r := run(t, "", append(append([]string{}, base...), "--vault-capture", "POST /api/x t")...); r.code != 1 || !strings.Contains(r.stderr, "without --vault") {
		t.Errorf("vault settings without --vault: exit %d %s", r.code, r.stderr)
	}
}
