package cli

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the testdata/*.golden files from the commands' output")

// Masks for what changes from run to run: times (a table's keep their
// width), generated passwords and the temporary store's path.
var (
	tableTime         = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d`)
	jsonTime          = regexp.MustCompile(`"\d{4}-\d\d-\d\dT[^"]*"`)
	logTime           = regexp.MustCompile(`time=\S+`)
	generatedPassword = regexp.MustCompile(`(store it in a password manager\):\n  )[A-Z2-7]{26}\n`)
)

// TestStoreCommandsTranscript runs the user and sessions commands through
// their successes and failures, with the argument checks of serve and demo,
// and compares every byte they print and every exit code with
// testdata/store_commands.golden (go test -run Transcript -update rewrites
// it): reorganising the commands must not change what they say.
func TestStoreCommandsTranscript(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)
	steps := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"user"}},
		{"", []string{"user", "help"}},
		{"", []string{"user", "rename", "alice"}},
		{"", []string{"sessions", "--help"}},
		{"", []string{"help", "user", "add"}},
		{"", []string{"user", "passwd", "-h"}},
		{"", []string{"user", "disable", "-h"}},
		{"", []string{"user", "list", "-h"}},
		{"", []string{"sessions", "list", "-h"}},
		{"", []string{"sessions", "revoke", "-h"}},
		{"", []string{"sessions", "revoke-everyone", "-h"}},
		{"", []string{"user", "add", "--store", store}},
		{"", []string{"user", "add", "alice", "bob", "--store", store}},
		{"", []string{"user", "add", "alice", "--no-such-flag"}},
		{"", []string{"user", "list", "extra", "--store", store}},
		{"", []string{"user", "list", "--store", store}},
		{"", []string{"user", "list", "--json", "--store", store}},
		{"", []string{"user", "add", "x", "--store", "nonsense"}},
		{"", []string{"user", "add", "x", "--password-stdin", "--store", "nonsense"}},
		{"", []string{"user", "list", "--store", "redis://127.0.0.1:1"}},
		{"a long enough password\n", []string{"user", "add", "alice", "--role", "admin", "--role", "ops,dev", "--email", "alice@example.com", "--password-stdin", "--store", store}},
		{"", []string{"user", "add", "--store", store, "bob"}},
		{"another long password\n", []string{"user", "add", "Alice", "--password-stdin", "--store", store}},
		{"\n", []string{"user", "add", "carol", "--password-stdin", "--store", store}},
		{"short\n", []string{"user", "add", "carol", "--password-stdin", "--store", store}},
		{"", []string{"user", "list", "--store", store}},
		{"", []string{"user", "list", "--json", "--store", store}},
		{"a brand new passphrase\r\n", []string{"user", "passwd", "alice", "--password-stdin", "--store", store}},
		{"", []string{"user", "passwd", "bob", "--store", store}},
		{"", []string{"user", "passwd", "zed", "--store", store}},
		{"", []string{"user", "disable", "bob", "--store", store}},
		{"", []string{"user", "list", "--store", store}},
		{"", []string{"user", "enable", "bob", "--store", store}},
		{"", []string{"user", "delete", "bob", "--store", store}},
		{"", []string{"user", "delete", "bob", "--store", store}},
		{"", []string{"user", "enable", "bob", "--store", store}},
		{"", []string{"user", "disable", "bob", "--store", store}},
		{"", []string{"user", "factors", "-h"}},
		{"", []string{"user", "reset-factors", "-h"}},
		{"", []string{"user", "factors", "alice", "--store", store}},
		{"", []string{"user", "factors", "zed", "--store", store}},
		{"", []string{"user", "reset-factors", "alice", "--store", store}},
		{"", []string{"user", "reset-factors", "alice", "--yes", "--store", store}},
		{"", []string{"user", "reset-factors", "zed", "--yes", "--store", store}},
		{"", []string{"sessions", "list", "--store", store}},
		{"", []string{"sessions", "list", "alice", "--store", store}},
		{"", []string{"sessions", "list", "alice", "--json", "--store", store}},
		{"plant", []string{"alice", "handle-one"}},
		{"plant", []string{"alice", "handle-two"}},
		{"", []string{"sessions", "list", "ALICE", "--store", store}},
		{"", []string{"sessions", "list", "alice", "--json", "--store", store}},
		{"", []string{"sessions", "list", "alice", "--store", "redis://127.0.0.1:1"}},
		{"", []string{"sessions", "revoke", "alice", "--handle", "nope", "--store", store}},
		{"", []string{"sessions", "revoke", "alice", "--handle", "handle-one", "--store", store}},
		{"", []string{"sessions", "revoke", "alice", "--store", store}},
		{"", []string{"sessions", "revoke", "--store", store}},
		{"", []string{"sessions", "revoke-everyone", "--store", store}},
		{"", []string{"sessions", "revoke-everyone", "now", "--yes", "--store", store}},
		{"", []string{"sessions", "revoke-everyone", "--yes", "--store", "nonsense"}},
		{"", []string{"sessions", "revoke-everyone", "--yes", "--store", store}},
		{"", []string{"serve", "extra"}},
		{"", []string{"demo", "extra"}},
	}
	var transcript strings.Builder
	for _, step := range steps {
		if step.stdin == "plant" {
			plantSession(t, store, step.args[0], step.args[1])
			fmt.Fprintf(&transcript, "# a session of %s, %s\n\n", step.args[0], step.args[1])
			continue
		}
		r := run(t, step.stdin, step.args...)
		fmt.Fprintf(&transcript, "$ cloakroom %s\nexit %d\n--- stdout\n%s--- stderr\n%s\n", strings.Join(step.args, " "), r.code, r.stdout, r.stderr)
	}
	got := transcript.String()
	got = strings.ReplaceAll(got, store, "sqlite://STORE")
	got = strings.ReplaceAll(got, strings.TrimPrefix(store, "sqlite://"), "STORE")
	got = tableTime.ReplaceAllString(got, "YYYY-MM-DD hh:mm")
	got = jsonTime.ReplaceAllString(got, `"TIME"`)
	got = logTime.ReplaceAllString(got, "time=TIME")
	got = generatedPassword.ReplaceAllString(got, "${1}GENERATED\n")

	golden := filepath.Join("testdata", "store_commands.golden")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gotLines), len(wantLines)) {
			if gotLines[i] != wantLines[i] {
				t.Fatalf("output differs from %s at line %d:\n got: %q\nwant: %q", golden, i+1, gotLines[i], wantLines[i])
			}
		}
		t.Fatalf("output differs from %s in length: %d lines, want %d", golden, len(gotLines), len(wantLines))
	}
}
