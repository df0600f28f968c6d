// Package doctest runs the project's documentation as a newcomer would:
// the shell blocks of a Markdown page, in an environment of someone who
// has just cloned the repository. Tests of the README's quick start and of
// docs/migrate.md use it; it is for tests only.
package doctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Section returns the text of a Markdown document under heading ("## Gateway
// quick start"), up to the next heading of the same level; "" when there
// is no such heading.
func Section(doc, heading string) string {
	_, rest, found := strings.Cut(doc, "\n"+heading+"\n")
	if !found {
		return ""
	}
	level := heading[:strings.Index(heading, " ")+1]
	if i := strings.Index(rest, "\n"+level); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// ShellBlocks returns the fenced ```sh blocks of a Markdown text, in
// order, with the indentation of a list item removed.
func ShellBlocks(doc string) []string {
	var blocks, cur []string
	inside, indent := false, ""
	for line := range strings.SplitSeq(doc, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case !inside && trimmed == "```sh":
			inside, indent, cur = true, line[:len(line)-len(trimmed)], nil
		case inside && trimmed == "```":
			inside = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case inside:
			cur = append(cur, strings.TrimPrefix(line, indent))
		}
	}
	return blocks
}

// NewcomerEnv is the environment of someone who has just cloned the
// repository: HOME as given and a TMPDIR of its own, none of the project's
// CLOAKROOM_* settings and no outer make, but the Go caches where they
// are, so that a HOME of its own does not mean a cold build.
func NewcomerEnv(t testing.TB, home string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CLOAKROOM_") || slices.Contains([]string{"HOME", "TMPDIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}, name) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "TMPDIR="+t.TempDir())
	for _, name := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, name+"="+strings.TrimSpace(string(out)))
	}
	return env
}

// WaitFree waits until addr can be listened on (another test may still be
// releasing it) and fails the test when it stays taken; why says what
// needs the address.
func WaitFree(t testing.TB, addr, why string) {
	t.Helper()
	var err error
	for range 300 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			l.Close()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal(fmt.Errorf("%s stays taken (%s): %w", addr, why, err))
}
