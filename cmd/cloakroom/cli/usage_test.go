package cli

import (
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
)

// TestHelpNamesEveryStoreScheme: the --store help of every command that
// takes it names each scheme the store URL parser accepts, and no help
// names a flag serve does not take.
func TestHelpNamesEveryStoreScheme(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{{"help", "serve"}, {"help", "user", "add"}, {"help", "sessions", "list"}} {
		r := mustRun(t, "", args...)
		line := ""
		for l := range strings.SplitSeq(r.stdout, "\n") {
			if strings.Contains(l, "session and user store") {
				line = l
			}
		}
		for _, scheme := range storeurl.Schemes() {
			if !strings.Contains(line, scheme+"://") {
				t.Errorf("cloakroom %s: the --store help does not name %s://:\n%s", strings.Join(args, " "), scheme, line)
			}
		}
	}
	r := mustRun(t, "", "help", "serve")
	if strings.Contains(r.stdout, "jwt-audience") {
		t.Errorf("help serve names the removed --jwt-audience:\n%s", r.stdout)
	}
	if r := run(t, "", "serve", "--check-config", "--jwt-audience", "x"); r.code != exitUsage {
		t.Errorf("--jwt-audience accepted: exit %d", r.code)
	}
}

// TestUnknownFlagSuggestsTheClosest: a mistyped flag or command gets one
// short error naming the nearest known one and a pointer to --help, not
// the whole usage.
func TestUnknownFlagSuggestsTheClosest(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		want string // the whole of stderr
	}{
		{[]string{"serve", "--statik", "./www"}, "cloakroom serve: unknown flag --statik; did you mean --static?\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "-Static=x"}, "cloakroom serve: unknown flag --Static; did you mean --static?\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "--check"}, "cloakroom serve: unknown flag --check; did you mean --check-config?\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "--trusted-proxie", "10.0.0.0/8"}, "cloakroom serve: unknown flag --trusted-proxie; did you mean --trusted-proxy?\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "--zzzzzz"}, "cloakroom serve: unknown flag --zzzzzz\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "--idle-timeout", "soon"}, "cloakroom serve: invalid value \"soon\" for flag --idle-timeout: \"soon\" is not a duration (use for example 30m or 12h)\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "--listen"}, "cloakroom serve: flag needs an argument: --listen\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"serve", "extra"}, "cloakroom serve: unexpected argument \"extra\" (settings are flags)\nUsage: cloakroom serve [flags]\nRun \"cloakroom serve --help\" for usage.\n"},
		{[]string{"user", "add"}, "cloakroom user add: missing the user name\nUsage: cloakroom user add NAME [--role ROLE]... [--email EMAIL] [--password-stdin]\nRun \"cloakroom user add --help\" for usage.\n"},
		{[]string{"user", "list", "--jsn"}, "cloakroom user list: unknown flag --jsn; did you mean --json?\nRun \"cloakroom user list --help\" for usage.\n"},
		{[]string{"demo", "--lisen", "127.0.0.1:1"}, "cloakroom demo: unknown flag --lisen; did you mean --listen?\nRun \"cloakroom demo --help\" for usage.\n"},
		{[]string{"serv"}, "cloakroom: unknown command \"serv\"; did you mean serve?\nRun \"cloakroom help\" for the commands.\n"},
		{[]string{"sesions", "list"}, "cloakroom: unknown command \"sesions\"; did you mean sessions?\nRun \"cloakroom help\" for the commands.\n"},
		{[]string{"frobnicate"}, "cloakroom: unknown command \"frobnicate\"\nRun \"cloakroom help\" for the commands.\n"},
		{[]string{"user", "lst"}, "cloakroom user: unknown subcommand \"lst\"; did you mean list?\nRun \"cloakroom user --help\" for the subcommands.\n"},
		{[]string{"sessions", "revoke-every"}, "cloakroom sessions: unknown subcommand \"revoke-every\"; did you mean revoke-everyone?\nRun \"cloakroom sessions --help\" for the subcommands.\n"},
		{[]string{"help", "usr"}, "cloakroom help: unknown command \"usr\"; did you mean user?\nRun \"cloakroom help\" for the commands.\n"},
	} {
		r := run(t, "", tc.args...)
		if r.code != exitUsage || r.stderr != tc.want || r.stdout != "" {
			t.Errorf("cloakroom %s: exit %d\nstdout %q\nstderr %q\nwant   %q", strings.Join(tc.args, " "), r.code, r.stdout, r.stderr, tc.want)
		}
	}
	// -h still prints the whole usage, with exit 0.
	if r := run(t, "", "serve", "-h"); r.code != exitOK || !strings.Contains(r.stderr, "--static DIR") {
		t.Errorf("serve -h: exit %d\n%s", r.code, r.stderr)
	}
}

func TestClosest(t *testing.T) {
	names := []string{"static", "store", "listen", "admin-listen", "check-config", "json"}
	for _, tc := range []struct{ typed, want string }{
		{"statik", "static"},
		{"sttaic", "static"}, // a transposition is one edit
		{"STORE", "store"},
		{"lisen", "listen"},
		{"check", "check-config"}, // the start of one name
		{"admin", "admin-listen"},
		{"js", ""}, // too short to guess from
		{"x", ""},
		{"frobnicate", ""},
		{"st", ""},
	} {
		if got := closest(tc.typed, names); got != tc.want {
			t.Errorf("closest(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
}
