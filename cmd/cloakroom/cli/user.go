package cli

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
)

// maxPasswordBytes bounds a password read from standard input.
const maxPasswordBytes = 1024

// storeTools is what `user` and `sessions` work with: the store named by
// --store, a session manager on it and the account service, which ends a
// user's sessions when their password changes or the account is disabled
// or deleted.
type storeTools struct {
	stores   *storeurl.Stores
	sessions *cloakroom.Manager
	accounts *accounts.Service
}

func (t *storeTools) close() { t.stores.Close() }

// storeFlags registers --store and --config, the settings the store
// commands read.
func storeFlags(fs *flag.FlagSet) *configFlags { return registerSettings(fs, "config", "store") }

func openStoreTools(e *env, fs *flag.FlagSet, cf *configFlags) (*storeTools, int) {
	cfg, problems := cf.resolve(e.lookupEnv)
	if _, err := storeurl.Parse(cfg.Store); err != nil {
		problems = append(problems, fmt.Errorf("--store: %w", err))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), p)
		}
		return nil, exitFailure
	}
	stores, err := storeurl.Open(e.ctx, cfg.Store)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return nil, exitFailure
	}
	// Audit events (sessions revoked) go to stderr; routine ones stay quiet.
	logger := newLogger(e.stderr, slog.LevelWarn, "text")
	sessions, err := cloakroom.New(cloakroom.Config{Store: stores.Sessions, Logger: logger})
	if err != nil {
		stores.Close()
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return nil, exitFailure
	}
	svc := accounts.New(stores.Accounts, accounts.Config{RevokeSessions: sessions.RevokeUser, Throttle: stores.Throttle, Logger: logger})
	return &storeTools{stores: stores, sessions: sessions, accounts: svc}, exitOK
}

type subcommand struct {
	name, synopsis, summary string
	run                     func(e *env, args []string) int
}

func userCommands() []subcommand {
	return []subcommand{
		{"add", "NAME [--role ROLE]... [--email EMAIL] [--password-stdin]", "add a user; without --password-stdin a strong password is generated and printed once", runUserAdd},
		{"passwd", "NAME [--password-stdin]", "set a user's password and end all their sessions", runUserPasswd},
		{"disable", "NAME", "disable a user and end all their sessions", runUserDisable},
		{"enable", "NAME", "enable a disabled user", runUserEnable},
		{"delete", "NAME", "delete a user and end all their sessions", runUserDelete},
		{"list", "[--json]", "list users", runUserList},
	}
}

func runUser(e *env, args []string) int {
	return dispatch(e, "user", "manage the gateway's users in the store", userCommands(), args)
}

// dispatch runs the subcommand named by args[0].
func dispatch(e *env, group, summary string, subs []subcommand, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: cloakroom %s <subcommand> [flags]\n\n%s.\n\nSubcommands:\n", group, capitalize(summary))
		for _, s := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun \"cloakroom %s <subcommand> -h\" for its flags.\n", group)
	}
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "cloakroom %s: missing subcommand\n\n", group)
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(e.stderr)
		return exitOK
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "cloakroom %s: unknown subcommand %q\n\n", group, args[0])
	usage(e.stderr)
	return exitUsage
}

func subcommandFlags(e *env, group string, name string) (*flag.FlagSet, *configFlags) {
	var sub subcommand
	list := userCommands()
	if group == "sessions" {
		list = sessionsCommands()
	}
	for _, s := range list {
		if s.name == name {
			sub = s
		}
	}
	fs := newFlagSet(e, group+" "+name, sub.synopsis, capitalize(sub.summary)+".")
	return fs, storeFlags(fs)
}

// oneName checks that exactly one positional argument, a user name, was
// given.
// nameArgument parses a subcommand's flags and its one user-name argument.
// When ok is false, code is the exit status to return.
func nameArgument(fs *flag.FlagSet, args []string) (name string, code int, ok bool) {
	positional, code, ok := parseArgs(fs, args)
	if !ok {
		return "", code, false
	}
	name, code = oneName(fs, positional)
	return name, code, code == exitOK
}

func oneName(fs *flag.FlagSet, positional []string) (string, int) {
	switch len(positional) {
	case 0:
		return "", usageError(fs, "missing the user name")
	case 1:
		return positional[0], exitOK
	default:
		return "", usageError(fs, "expected one user name, got %d arguments", len(positional))
	}
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

func runUserAdd(e *env, args []string) int {
	fs, cf := subcommandFlags(e, "user", "add")
	var roles listFlag
	fs.Var(&roles, "role", "give the user this `ROLE` (repeatable, or comma-separated); upstreams see roles in X-Forwarded-Groups")
	email := fs.String("email", "", "the user's `EMAIL` address, passed upstream in X-Forwarded-Email")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	name, code, ok := nameArgument(fs, args)
	if !ok {
		return code
	}
	password, generated, err := obtainPassword(e.stdin, *fromStdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	if err := t.accounts.Add(e.ctx, name, password, roles, *email); err != nil {
		return reportAccountError(e, fs, name, err)
	}
	fmt.Fprintf(e.stdout, "added user %s", name)
	if len(roles) > 0 {
		fmt.Fprintf(e.stdout, " with roles %s", strings.Join(roles, ", "))
	}
	fmt.Fprintln(e.stdout)
	if generated {
		printGeneratedPassword(e.stdout, name, password)
	}
	return exitOK
}

func runUserPasswd(e *env, args []string) int {
	fs, cf := subcommandFlags(e, "user", "passwd")
	fromStdin := fs.Bool("password-stdin", false, "read the new password from the first line of standard input")
	name, code, ok := nameArgument(fs, args)
	if !ok {
		return code
	}
	password, generated, err := obtainPassword(e.stdin, *fromStdin)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	if err := t.accounts.SetPassword(e.ctx, name, password); err != nil {
		return reportAccountError(e, fs, name, err)
	}
	fmt.Fprintf(e.stdout, "changed the password of %s and ended all their sessions\n", name)
	if generated {
		printGeneratedPassword(e.stdout, name, password)
	}
	return exitOK
}

func runUserDisable(e *env, args []string) int {
	return simpleUserChange(e, "disable", args, func(t *storeTools, name string) error {
		return t.accounts.Disable(e.ctx, name)
	}, "disabled %s and ended all their sessions")
}

func runUserEnable(e *env, args []string) int {
	return simpleUserChange(e, "enable", args, func(t *storeTools, name string) error {
		return t.accounts.Enable(e.ctx, name)
	}, "enabled %s")
}

func runUserDelete(e *env, args []string) int {
	return simpleUserChange(e, "delete", args, func(t *storeTools, name string) error {
		return t.accounts.Delete(e.ctx, name)
	}, "deleted %s and ended all their sessions")
}

func simpleUserChange(e *env, sub string, args []string, change func(*storeTools, string) error, done string) int {
	fs, cf := subcommandFlags(e, "user", sub)
	name, code, ok := nameArgument(fs, args)
	if !ok {
		return code
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	if err := change(t, name); err != nil {
		return reportAccountError(e, fs, name, err)
	}
	fmt.Fprintf(e.stdout, done+"\n", name)
	return exitOK
}

func runUserList(e *env, args []string) int {
	fs, cf := subcommandFlags(e, "user", "list")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	positional, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(fs, "unexpected argument %q", positional[0])
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	users, err := t.accounts.List(e.ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	if *asJSON {
		type userJSON struct {
			Name              string    `json:"name"`
			Email             string    `json:"email,omitempty"`
			Roles             []string  `json:"roles"`
			Disabled          bool      `json:"disabled"`
			CreatedAt         time.Time `json:"created_at"`
			PasswordChangedAt time.Time `json:"password_changed_at"`
		}
		out := make([]userJSON, 0, len(users))
		for _, u := range users {
			roles := u.Roles
			if roles == nil {
				roles = []string{}
			}
			out = append(out, userJSON{u.Name, u.Email, roles, u.Disabled, u.CreatedAt, u.PasswordChangedAt})
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return exitFailure
		}
		return exitOK
	}
	if len(users) == 0 {
		fmt.Fprintln(e.stdout, "no users yet; add one with: cloakroom user add NAME")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLES\tEMAIL\tSTATUS\tCREATED\tPASSWORD CHANGED")
	for _, u := range users {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, orDash(strings.Join(u.Roles, ",")), orDash(u.Email),
			status, formatTime(u.CreatedAt), formatTime(u.PasswordChangedAt))
	}
	tw.Flush()
	return exitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// reportAccountError explains an account-service error and returns the exit
// code.
func reportAccountError(e *env, fs *flag.FlagSet, name string, err error) int {
	switch {
	case errors.Is(err, accounts.ErrUserExists):
		fmt.Fprintf(e.stderr, "%s: user %q already exists (change its password with: cloakroom user passwd %s)\n", fs.Name(), name, name)
	case errors.Is(err, accounts.ErrNoSuchUser):
		fmt.Fprintf(e.stderr, "%s: no user %q (see: cloakroom user list)\n", fs.Name(), name)
	default:
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
	}
	return exitFailure
}

// obtainPassword reads the password from the first line of stdin, or
// generates one.
func obtainPassword(stdin io.Reader, fromStdin bool) (password string, generated bool, err error) {
	if !fromStdin {
		return generatePassword(), true, nil
	}
	if stdin == nil {
		return "", false, errors.New("--password-stdin: no standard input")
	}
	line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxPasswordBytes+2), maxPasswordBytes+2).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, fmt.Errorf("--password-stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return "", false, errors.New("--password-stdin: standard input held no password")
	case len(line) > maxPasswordBytes:
		return "", false, fmt.Errorf("--password-stdin: the password is longer than %d bytes", maxPasswordBytes)
	}
	return line, false, nil
}

// generatePassword returns 26 random base32 characters: 130 bits from
// crypto/rand, easy to copy and read aloud.
func generatePassword() string { return rand.Text() }

func printGeneratedPassword(w io.Writer, name, password string) {
	fmt.Fprintf(w, "password for %s (shown only now; store it in a password manager):\n  %s\n", name, password)
}
