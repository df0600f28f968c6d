// Command report runs the benchmarks under bench/ in one run and prints each
// as ns/op, allocs/op, the cost added over the bare handler and the ratio to
// it, then the ratios between schemes the project sets targets for (the
// SQLite store's cached check against memstore, its uncached check against
// a raw point SELECT, ...). `make bench` runs it with -rounds 3. -rounds N repeats the
// whole run N times and keeps each benchmark's lowest figure; other
// arguments go to `go test` (for example -benchtime=2s).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
)

type result struct {
	name          string
	nsPerOp       float64
	bytesPerOp    float64
	allocsPerOp   float64
	haveMemFigure bool
	vaultShare    float64 // BenchmarkProxyVaultShare's vault/plain metric
}

func main() {
	// -rounds N runs the whole set N times and keeps each benchmark's
	// lowest figure: unlike go test's -count, which repeats a benchmark
	// back to back, rounds spread the machine's background load over all
	// of them alike. The other arguments go to go test.
	rounds := 1
	var extra []string
	for i := 1; i < len(os.Args); i++ {
		arg := os.Args[i]
		if v, ok := strings.CutPrefix(arg, "-rounds="); ok {
			rounds = atoiOrExit(v)
			continue
		}
		if arg == "-rounds" && i+1 < len(os.Args) {
			rounds = atoiOrExit(os.Args[i+1])
			i++
			continue
		}
		extra = append(extra, arg)
	}
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem"}, extra...)
	args = append(args, "./bench/")
	var out bytes.Buffer
	for range rounds {
		cmd := exec.Command("go", args...)
		cmd.Stderr = os.Stderr
		var round bytes.Buffer
		cmd.Stdout = &round
		if err := cmd.Run(); err != nil {
			os.Stdout.Write(round.Bytes())
			fmt.Fprintln(os.Stderr, "report: benchmarks failed:", err)
			os.Exit(1)
		}
		out.Write(round.Bytes())
	}
	results, header := parse(out.Bytes())
	var bare float64
	for _, r := range results {
		if r.name == "Bare" {
			bare = r.nsPerOp
		}
	}
	fmt.Print(header)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "benchmark\tns/op\tallocs/op\tB/op\tover bare (ns)\tx bare\t")
	for _, r := range results {
		over, ratio := "-", "-"
		if bare > 0 {
			over = fmt.Sprintf("%.0f", r.nsPerOp-bare)
			ratio = fmt.Sprintf("%.2f", r.nsPerOp/bare)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t\n", r.name, r.nsPerOp, r.allocsPerOp, r.bytesPerOp, over, ratio)
	}
	tw.Flush()
	printRatios(results, bare)
}

// ratio compares two benchmarks of the run: a cost (ns/op over the bare
// handler for request benchmarks, plain ns/op for the raw query) against a
// reference, with the target it should meet.
type ratio struct {
	what, num, den string
	numOverBare    bool // subtract the bare handler from num
	denOverBare    bool
	max            float64 // target: at most this; 0 for none
}

// absolute lists the costs over bare with a target in nanoseconds.
var absolute = []struct {
	what, name string
	maxNs      float64
}{
	{"memstore check over bare (µs)", "CloakroomMemstore", 600},
	{"Redis warm check over bare (µs)", "CloakroomRedisCached", 1500},
}

var ratios = []ratio{
	{"SQLite warm check / memstore check", "CloakroomSQLiteWarm", "CloakroomMemstore", true, true, 2},
	{"SQLite cold check / raw SQLite point SELECT", "CloakroomSQLiteCold", "SQLiteRawSelect", true, false, 1.3},
	{"SQLite cold / SQLite warm", "CloakroomSQLiteCold", "CloakroomSQLiteWarm", true, true, 0},
	{"Redis warm check / memstore check", "CloakroomRedisCached", "CloakroomMemstore", true, true, 0},
	{"Postgres cached check / memstore check", "CloakroomPostgresCached", "CloakroomMemstore", true, true, 0},
	// An nginx auth_request decision in-process (adapter, rules, session
	// check, identity headers) against the plain session check.
	{"forward-auth decision / memstore check", "ForwardAuthDecision", "CloakroomMemstore", true, true, 0},
	{"scs memstore / cloakroom memstore", "SCSMemstore", "CloakroomMemstore", true, true, 0},
	{"gorilla CookieStore / cloakroom memstore", "GorillaCookieStore", "CloakroomMemstore", true, true, 0},
	{"JWT ES256 verification / SQLite warm check", "JWTES256", "CloakroomSQLiteWarm", true, true, 0},
	{"JWT EdDSA verification / SQLite warm check", "JWTEdDSA", "CloakroomSQLiteWarm", true, true, 0},
	// The vault's walk of an answer a user can make the app echo, against
	// one json.Valid pass over the same MiB.
	{"vault scan / json.Valid: 1 MiB of duplicate token keys", "VaultScanDuplicateTokens", "JSONValidDuplicateTokens", false, false, 3},
	{"vault scan / json.Valid: 1 MiB nested 10,000 deep", "VaultScanDeep", "JSONValidDeep", false, false, 3},
	{"vault scan / json.Valid: 1 MiB of near-miss keys", "VaultScanNearMisses", "JSONValidNearMisses", false, false, 3},
}

// vaultShareTarget is the most CPU a proxied call on a vault route may cost
// relative to the same call on an ordinary route, measured with the two
// interleaved (BenchmarkProxyVaultShare).
const vaultShareTarget = 1.1

func printRatios(results []result, bare float64) {
	ns := map[string]float64{}
	for _, r := range results {
		ns[r.name] = r.nsPerOp
	}
	cost := func(name string, overBare bool) (float64, bool) {
		v, ok := ns[name]
		if overBare {
			v -= bare
		}
		return v, ok && v > 0
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio (costs over bare; the raw SELECT is a query alone)\tvalue\ttarget\t")
	for _, r := range ratios {
		num, okNum := cost(r.num, r.numOverBare)
		den, okDen := cost(r.den, r.denOverBare)
		if !okNum || !okDen {
			continue
		}
		target := ""
		if r.max > 0 {
			verdict := "met"
			if num/den > r.max {
				verdict = "NOT met"
			}
			target = fmt.Sprintf("<= %.1f: %s", r.max, verdict)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t\n", r.what, num/den, target)
	}
	for _, r := range results {
		if r.name == "ProxyVaultShare" && r.vaultShare > 0 {
			verdict := "met"
			if r.vaultShare > vaultShareTarget {
				verdict = "NOT met"
			}
			fmt.Fprintf(tw, "vault route / plain route, interleaved (CPU per request)\t%.2f\t<= %.1f: %s\t\n", r.vaultShare, vaultShareTarget, verdict)
		}
	}
	// Absolute targets: the memstore request's own cost, which no store or
	// network adds to, and the warm Redis check's (once "2x memstore",
	// which made every memstore speed-up read as a Redis regression).
	for _, t := range absolute {
		v, ok := cost(t.name, true)
		if !ok {
			continue
		}
		verdict := "met"
		if v > t.maxNs {
			verdict = "NOT met"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t<= %.1f: %s\t\n", t.what, v/1000, t.maxNs/1000, verdict)
	}
	if mem, okMem := cost("CloakroomMemstore", true); okMem {
		if floor, ok := cost("Floor", true); ok {
			fmt.Fprintf(tw, "memstore check / floor (SHA-256 + map lookup)\t%.2f\t\t\n", mem/floor)
		}
	}
	tw.Flush()
}

// parse reads `go test -bench` output; with -count or -rounds > 1 it keeps
// the lowest ns/op of each benchmark. Only the first header is kept.
func parse(out []byte) ([]result, string) {
	var header strings.Builder
	var results []result
	index := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "goos:") || strings.HasPrefix(line, "goarch:") || strings.HasPrefix(line, "cpu:") {
			if !strings.Contains(header.String(), line) {
				header.WriteString(line + "\n")
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		r := result{name: name}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				r.nsPerOp = v
			case "B/op":
				r.bytesPerOp, r.haveMemFigure = v, true
			case "allocs/op":
				r.allocsPerOp = v
			case "vault/plain":
				r.vaultShare = v
			}
		}
		if j, ok := index[name]; ok {
			if r.nsPerOp < results[j].nsPerOp {
				results[j] = r
			}
			continue
		}
		index[name] = len(results)
		results = append(results, r)
	}
	return results, header.String()
}

func atoiOrExit(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "report: -rounds %q: want a positive number\n", s)
		os.Exit(2)
	}
	return n
}
