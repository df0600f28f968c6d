package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
)

// What the `user` and `sessions` subcommands share: their table and
// dispatch, the store they open, how they parse a user name, and how they
// report failures and print lists.

type subcommand struct {
	name, synopsis, summary string
	run                     func(e *env, args []string) int
}

// dispatch runs the subcommand named by args[0].
func dispatch(e *env, group, summary string, subs []subcommand, args []string) int {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: cloakroom %s <subcommand> [flags]\n\n%s.\n\nSubcommands:\n", group, capitalize(summary))
		width := 8
		for _, s := range subs {
			width = max(width, len(s.name))
		}
		for _, s := range subs {
			fmt.Fprintf(w, "  %-*s %s\n", width, s.name, s.summary)
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
	names := make([]string, 0, len(subs))
	for _, s := range subs {
		names = append(names, s.name)
	}
	return unknownCommand(e, "cloakroom "+group, "subcommand", args[0], names, "cloakroom "+group+" --help", "subcommands")
}

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

// storeCommand is one run of a `user` or `sessions` subcommand: its flag
// set, with --store and --config, the settings it reads.
type storeCommand struct {
	*env
	fs *flag.FlagSet
	cf *configFlags
	// createsStore lets the command create a missing SQLite database
	// (user add, which adds the first user before serve has run) and say
	// so; every other command refuses a store that does not exist.
	createsStore bool
}

// newStoreCommand returns the subcommand name of group with its usage and
// the store settings; the caller adds the subcommand's own flags.
func newStoreCommand(e *env, group, name string) *storeCommand {
	list := userCommands()
	if group == "sessions" {
		list = sessionsCommands()
	}
	var sub subcommand
	for _, s := range list {
		if s.name == name {
			sub = s
		}
	}
	fs := newFlagSet(e, group+" "+name, sub.synopsis, capitalize(sub.summary)+".")
	return &storeCommand{env: e, fs: fs, cf: registerSettings(fs, "config", "store")}
}

// fail reports each problem on a line of its own and returns exitFailure.
func (c *storeCommand) fail(problems ...error) int {
	for _, p := range problems {
		fmt.Fprintf(c.stderr, "%s: %s\n", c.fs.Name(), plainMessage(p))
	}
	return exitFailure
}

// done ends the subcommand: with err, as its failure; without, by printing
// what it did.
func (c *storeCommand) done(err error, format string, args ...any) int {
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, format, args...)
	return exitOK
}

// accountFailure explains an account-service error about the user name.
func (c *storeCommand) accountFailure(name string, err error) int {
	switch {
	case errors.Is(err, accounts.ErrUserExists):
		err = fmt.Errorf("user %q already exists (change its password with: cloakroom user passwd %s)", name, name)
	case errors.Is(err, accounts.ErrNoSuchUser):
		err = fmt.Errorf("no user %q (see: cloakroom user list)", name)
	}
	return c.fail(err)
}

// withStore opens the store the settings name, runs do with it and closes
// it again.
func (c *storeCommand) withStore(do func(t *storeTools) int) int {
	t, problems := c.openStore()
	if len(problems) > 0 {
		return c.fail(problems...)
	}
	defer t.close()
	return do(t)
}

func (c *storeCommand) openStore() (*storeTools, []error) {
	cfg, problems := c.cf.resolve(c.lookupEnv)
	loc, warnings, err := storeurl.Check(cfg.Store)
	if err != nil {
		problems = append(problems, fmt.Errorf("--store: %w", err))
	}
	if len(problems) > 0 {
		return nil, problems
	}
	for _, w := range warnings {
		fmt.Fprintf(c.stderr, "%s: warning: --store: %s\n", c.fs.Name(), w)
	}
	// Only user add creates a SQLite file, and says so: a mistyped --store
	// would otherwise leave an empty database behind and report "no users
	// yet".
	created := false
	if c.createsStore && loc.Kind == "sqlite" {
		if _, err := os.Stat(loc.Path); errors.Is(err, fs.ErrNotExist) {
			created = true
		}
	}
	stores, err := storeurl.OpenWith(c.ctx, cfg.Store, storeurl.Options{CreateSQLite: c.createsStore})
	if err == nil && created {
		fmt.Fprintf(c.stderr, "created a new store %s\n", loc)
	}
	if errors.Is(err, storeurl.ErrNoDatabase) {
		err = explain(err, "the store %s does not exist (no file %s); check --store, or start cloakroom serve with it once to create it", loc, loc.Path)
	}
	if err != nil {
		return nil, []error{err}
	}
	// Audit events (sessions revoked) go to stderr; routine ones stay quiet.
	logger := newLogger(c.stderr, slog.LevelWarn, "text")
	sessions, err := cloakroom.New(cloakroom.Config{Store: stores.Sessions, Logger: logger})
	if err != nil {
		stores.Close()
		return nil, []error{err}
	}
	svc := accounts.New(stores.Accounts, accounts.Config{RevokeSessions: sessions.RevokeUser, Throttle: stores.Throttle, Logger: logger})
	return &storeTools{stores: stores, sessions: sessions, accounts: svc}, nil
}

// withUser parses the flags and the one user-name argument, then runs do
// with the store open.
func (c *storeCommand) withUser(args []string, do func(t *storeTools, name string) int) int {
	name, code, ok := nameArgument(c.fs, args)
	if !ok {
		return code
	}
	return c.withStore(func(t *storeTools) int { return do(t, name) })
}

// nameArgument parses a subcommand's flags and its one user-name argument.
// When ok is false, code is the exit status to return.
func nameArgument(fs *flag.FlagSet, args []string) (name string, code int, ok bool) {
	positional, code, ok := parseArgs(fs, args)
	if !ok {
		return "", code, false
	}
	switch len(positional) {
	case 0:
		return "", usageError(fs, "missing the user name"), false
	case 1:
		return positional[0], exitOK, true
	default:
		return "", usageError(fs, "expected one user name, got %d arguments", len(positional)), false
	}
}

// printJSONList prints a list command's items as indented JSON, [] when
// there are none.
func printJSONList[T any](w io.Writer, items []T) int {
	if items == nil {
		items = []T{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(items); err != nil {
		return exitFailure
	}
	return exitOK
}

// printTable prints a list command's items in aligned columns: the header
// (tab-separated), then one row of cells per item.
func printTable[T any](w io.Writer, header string, items []T, cells func(T) []string) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, item := range items {
		fmt.Fprintln(tw, strings.Join(cells(item), "\t"))
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
