// Package leakcheck fails a test binary that leaves goroutines running
// after its tests: a session watcher, a sweeper or a server a test forgot
// to stop. Call it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle is how long goroutines that are already ending get to finish. It
// is a grace period for shutdown, not a measure of speed: the check passes
// as soon as the leftovers are gone.
const settle = 20 * time.Second

// ignored are goroutines that the runtime, the testing package and the
// standard library start and keep for the life of the process.
var ignored = []string{
	"testing.(*M).",
	"testing.tRunner",
	"testing.runFuzzing",
	"runtime.goexit0",
	"os/signal.signal_recv",
	"os/signal.loop",
	"runtime.ensureSigM",
	"runtime/trace.",
	"net/http.(*persistConn)",
	"database/sql.(*DB).connectionOpener",
	"modernc.org/libc",
	"created by runtime.gc",
}

// Main runs the tests, then fails the binary if goroutines started by the
// tests are still running once they had time to end.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := wait(); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leakcheck: %d goroutine(s) still running after the tests:\n\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

func wait() []string {
	deadline := time.Now().Add(settle)
	for {
		leaked := running()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running lists the stacks of goroutines other than this one and the
// ignored ones.
func running() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := strings.Split(string(buf), "\n\n")
	var out []string
	for i, st := range stacks {
		if i == 0 || strings.TrimSpace(st) == "" {
			continue // the first is this goroutine
		}
		if !isIgnored(st) {
			out = append(out, st)
		}
	}
	return out
}

func isIgnored(stack string) bool {
	for _, s := range ignored {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
