// Package cli is the cloakroom command: `serve` runs the gateway, `demo`
// runs it in front of a bundled notes app, `user` and `sessions` manage
// accounts and sessions in the store. [Run] is the whole program; main only
// wires signals to its context, so tests run every command in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed, or the configuration is invalid
	exitUsage   = 2 // unknown command or flag, wrong arguments
)

// Version is set at build time with -ldflags "-X .../cmd/cloakroom/cli.Version=v1.2.3";
// otherwise the module version from the build info is used.
var Version = ""

// env bundles what a command may touch, so tests can run them in-process.
type env struct {
	ctx       context.Context
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(e *env, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "run the gateway", runServe},
		{"demo", "run the gateway in front of the bundled notes app, on loopback", runDemo},
		{"user", "add, list, change, disable, enable or delete users", runUser},
		{"sessions", "list or revoke a user's sessions", runSessions},
		{"version", "print the version", runVersion},
		{"help", "show help for a command", runHelp},
	}
}

// Run runs the cloakroom command with args (without the program name) and
// returns the process exit code: 0 on success, 1 on failure, 2 on a usage
// error. It returns when the command is done; `serve` and `demo` run until
// ctx is cancelled, then shut down gracefully.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	if len(args) == 0 {
		printMainUsage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printMainUsage(stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(e, args[1:])
		}
	}
	return unknownCommand(e, "cloakroom", "command", name, commandNames(), "cloakroom help", "commands")
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `cloakroom: server-side sessions and a Backend-for-Frontend gateway for SPAs.

Usage: cloakroom <command> [flags] [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "cloakroom help <command>" for a command's flags.
Start with "cloakroom demo": it prints the URLs to open and the demo passwords.
`)
}

func runVersion(e *env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintln(e.stderr, "cloakroom version: takes no arguments")
		return exitUsage
	}
	info, _ := debug.ReadBuildInfo()
	fmt.Fprint(e.stdout, versionText(Version, info))
	return exitOK
}

// versionText says which build this is, so a bug report can name it: the
// version (override, from -ldflags, else the module's), the commit it was
// built from, whether the tree had uncommitted changes, the commit's time,
// and the Go toolchain. Go records the commit only when it builds inside a
// checkout (not with -buildvcs=false, nor for go run or go test).
func versionText(override string, info *debug.BuildInfo) string {
	var b strings.Builder
	version := "(devel)"
	switch {
	case override != "":
		version = override
	case info != nil && info.Main.Version != "":
		version = info.Main.Version
	}
	fmt.Fprintf(&b, "cloakroom %s\n", version)
	if revision := vcsSetting(info, "vcs.revision"); revision != "" {
		b.WriteString("commit " + revision)
		if vcsSetting(info, "vcs.modified") == "true" {
			b.WriteString(" (modified: built with uncommitted changes)")
		}
		b.WriteString("\n")
		if at := vcsSetting(info, "vcs.time"); at != "" {
			b.WriteString("committed " + at + "\n")
		}
	} else {
		b.WriteString("commit unknown (built without VCS information)\n")
	}
	fmt.Fprintf(&b, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}

// vcsSetting returns the build setting key of info, or "".
func vcsSetting(info *debug.BuildInfo, key string) string {
	if info == nil {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

func runHelp(e *env, args []string) int {
	switch {
	case len(args) == 0:
		printMainUsage(e.stdout)
		return exitOK
	case len(args) > 2:
		fmt.Fprintln(e.stderr, "cloakroom help: usage: cloakroom help <command> [subcommand]")
		return exitUsage
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if c.name == "help" || c.name == "version" {
				fmt.Fprintf(e.stdout, "Usage: cloakroom %s\n\n%s.\n", c.name, capitalize(c.summary))
				return exitOK
			}
			// Each command prints its own usage for -h.
			rest := append(args[1:], "-h")
			e2 := *e
			e2.stderr = e.stdout
			c.run(&e2, rest)
			return exitOK
		}
	}
	return unknownCommand(e, "cloakroom help", "command", args[0], commandNames(), "cloakroom help", "commands")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints usage with the given synopsis and description.
func newFlagSet(e *env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("cloakroom "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: cloakroom %s %s\n\n%s\n", name, synopsis, description)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			printFlags(w, fs)
		}
	}
	return fs
}

// printFlags lists the flags as --name ARG, with the argument names of the
// settings table.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if v, ok := f.Value.(*flagValue); ok {
			arg = v.s.arg
		}
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if _, isSetting := f.Value.(*flagValue); !isSetting && f.DefValue != "" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// parseArgs parses flags that may come before, between or after the
// positional arguments (`user add alice --role admin`), and returns the
// positional ones. "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var positional []string
	for {
		if err := parseQuietly(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.Usage()
				return nil, exitOK, false
			}
			return nil, printUsageError(fs, flagError(fs, err)), false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, exitOK, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), exitOK, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseQuietly parses args with fs, leaving the reporting of an error, and
// of -h, to the caller: the flag package would print its own message and
// the whole usage.
func parseQuietly(fs *flag.FlagSet, args []string) error {
	usage, output := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	defer func() {
		fs.Usage = usage
		fs.SetOutput(output)
	}()
	return fs.Parse(args)
}

// parseFlagsOnly parses the flags of a command that takes no positional
// arguments; one is a usage error, its message ending with note. When ok is
// false, code is the exit status to return.
func parseFlagsOnly(fs *flag.FlagSet, args []string, note string) (code int, ok bool) {
	positional, code, ok := parseArgs(fs, args)
	if ok && len(positional) > 0 {
		return usageError(fs, "unexpected argument %q%s", positional[0], note), false
	}
	return code, ok
}

// usageError prints what is wrong with the command's arguments, its
// synopsis (the first line of its usage) and where the rest of its usage
// is, and returns exitUsage.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	var usage strings.Builder
	output := fs.Output()
	fs.SetOutput(&usage)
	fs.Usage()
	fs.SetOutput(output)
	synopsis, _, _ := strings.Cut(usage.String(), "\n")
	fmt.Fprintf(output, "%s: %s\n%s\n", fs.Name(), fmt.Sprintf(format, args...), synopsis)
	fmt.Fprintf(output, "Run \"%s --help\" for usage.\n", fs.Name())
	return exitUsage
}

// flatten returns the problems of an errors.Join result one by one.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
