package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnlyUserAddCreatesTheStore: the user and sessions commands refuse a
// SQLite store that does not exist, and leave no file behind; serve
// creates it, and so does user add, which says so.
func TestOnlyUserAddCreatesTheStore(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "nope.db")
	for _, args := range [][]string{
		{"user", "list"},
		{"user", "disable", "alice"},
		{"sessions", "list", "alice"},
		{"sessions", "revoke-everyone", "--yes"},
	} {
		r := run(t, "", append(args, "--store", "sqlite://"+path)...)
		want := "cloakroom " + strings.Join(args[:2], " ") + ": the store sqlite://" + path + " does not exist (no file " + path + "); check --store, or start cloakroom serve with it once to create it\n"
		if r.code != exitFailure || r.stderr != want || r.stdout != "" {
			t.Errorf("cloakroom %s: exit %d\nstdout %q\nstderr %q\nwant   %q", strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("cloakroom %s created %s", strings.Join(args, " "), path)
		}
	}

	// serve creates it, owner-only; then the commands work on it.
	srv := start(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "", "--store", "sqlite://"+path, "--log-format", "json")
	srv.listening(t)
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("serve did not create %s owner-only: %v %v", path, info, err)
	}
	if r := mustRun(t, "", "user", "list", "--store", "sqlite://"+path); r.stdout != "no users yet; add one with: cloakroom user add NAME\n" {
		t.Errorf("user list on the new store: %q", r.stdout)
	}
	srv.stop(t)

	// user add may come first, before serve ever ran: it creates the
	// store, owner-only, and says so.
	first := filepath.Join(dir, "first.db")
	r := run(t, "", "user", "add", "alice", "--store", "sqlite://"+first)
	if r.code != exitOK || !strings.Contains(r.stderr, "created a new store sqlite://"+first) {
		t.Fatalf("user add on a new store: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	if info, err := os.Stat(first); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("user add did not create %s owner-only: %v %v", first, info, err)
	}
	if r := mustRun(t, "", "user", "list", "--store", "sqlite://"+first); !strings.Contains(r.stdout, "alice") {
		t.Errorf("user list after user add: %q", r.stdout)
	}
}
