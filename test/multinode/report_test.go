package multinode

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// reportEnv names the file the measured figures are written to, as
// Markdown, when set.
const reportEnv = "CLOAKROOM_MULTINODE_REPORT"

// report collects the figures of every test.
var report struct {
	mu      sync.Mutex
	windows []windowRow
	stores  []storeRow
	watches []watchRow
	faults  []faultRow
	// everyone holds the figures of TestRevokeEveryoneOnEveryNode.
	everyone []everyoneRow
}

func TestMain(m *testing.M) {
	code := m.Run()
	if path := os.Getenv(reportEnv); path != "" {
		if err := writeReport(path); err != nil {
			fmt.Fprintf(os.Stderr, "multinode: writing %s: %v\n", path, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

func writeReport(path string) error {
	report.mu.Lock()
	defer report.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "## Multi-node figures\n\nMeasured by `go test ./test/multinode` on %s, %s/%s, GOMAXPROCS=%d, %s%s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.Version(), raceNote())
	if len(report.windows) > 0 {
		b.WriteString("### Revocation window after logout\n\n")
		b.WriteString(formatWindowRows(report.windows))
		b.WriteString("\n")
	}
	if len(report.stores) > 0 {
		b.WriteString("### Store-layer revocation across nodes\n\n")
		b.WriteString(formatStoreRows(report.stores))
		b.WriteString("\n")
	}
	if len(report.watches) > 0 {
		b.WriteString("### Watched sessions ended on every node\n\n")
		b.WriteString(formatWatchRows(report.watches))
		b.WriteString("\n")
	}
	if len(report.everyone) > 0 {
		b.WriteString("### Everyone revoked on every node\n\n")
		b.WriteString(formatEveryoneRows(report.everyone))
		b.WriteString("\n")
	}
	if len(report.faults) > 0 {
		b.WriteString("### Failing closed when the store goes away\n\n")
		b.WriteString(formatFaultRows(report.faults))
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// durations summarises a sample of durations.
type durations []time.Duration

// quantile returns the q-quantile by the nearest-rank method.
func (d durations) quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(q*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func (d durations) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// positive counts the non-zero durations.
func (d durations) positive() int {
	n := 0
	for _, x := range d {
		if x > 0 {
			n++
		}
	}
	return n
}

// ms formats a duration in milliseconds with microsecond precision.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}
