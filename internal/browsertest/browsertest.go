// Package browsertest starts a headless Chromium for tests, driven through
// chromedp.
//
// It looks for Debian's chromium (/usr/bin/chromium, then chromium,
// chromium-browser, google-chrome on PATH; CLOAKROOM_CHROMIUM names another
// binary). When none is found and the test runs as root, it tries
// `apt-get install -y chromium` once per test binary. When there is still no
// browser the test is skipped, unless CLOAKROOM_REQUIRE_BROWSER=1, which
// makes it fail: set it in CI so that a missing browser cannot pass silently.
//
// For Device Bound Session Credentials (DBSC), [NewWith] turns on
// Chromium's DBSC test flags and trusts the pinned certificate of a
// [ServeTLS] server; [WatchDBSC] records what Chromium did with the
// session (it refuses a bad registration silently otherwise), and
// [Cookies] with [CopyJar] replay the browser's whole cookie store from a
// Go client, as an infostealer would.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Environment variables read by New.
const (
	// RequireEnv set to "1" turns a missing browser into a test failure.
	RequireEnv = "CLOAKROOM_REQUIRE_BROWSER"
	// PathEnv names the browser binary to use instead of searching.
	PathEnv = "CLOAKROOM_CHROMIUM"
)

// Timeout bounds everything a test does with the context New returns.
const Timeout = 2 * time.Minute

// installTimeout bounds the one apt-get attempt.
const installTimeout = 5 * time.Minute

var (
	installOnce sync.Once
	installLog  string
)

// New starts a fresh headless Chromium with its own temporary profile and
// returns a chromedp context for one tab. The browser stops when the test
// ends. The context carries a deadline of Timeout.
func New(t testing.TB) context.Context {
	t.Helper()
	return NewWith(t, Options{})
}

// Options are the browser settings of [NewWith]. The zero value is the
// browser of [New].
type Options struct {
	// TrustSPKIPins are the SPKI pins (localtls.Cert.SPKIPin) of test
	// certificates the browser accepts, through
	// --ignore-certificate-errors-spki-list. Default none.
	TrustSPKIPins []string
	// DBSC turns on Device Bound Session Credentials with software keys,
	// the flag Chromium offers for testing on Linux (see DBSCFeatures).
	// DBSC needs an HTTPS origin the browser trusts: see ServeTLS.
	// Default off.
	DBSC bool
	// DBSCQuota keeps Chromium's signing quota with DBSC: 6 signatures per
	// site in 9 minutes, registration included. Default off, because a
	// test with bound cookies of seconds makes Chromium refresh on almost
	// every request (it refreshes ahead when the cookie ends within 2
	// minutes) and would run out after a few refreshes.
	DBSCQuota bool
}

// NewWith is [New] with options.
func NewWith(t testing.TB, o Options) context.Context {
	t.Helper()
	path := find()
	if path == "" {
		path = install(t)
	}
	if path == "" {
		msg := "no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, google-chrome; set " + PathEnv + ")"
		if installLog != "" {
			msg += "; apt-get install -y chromium failed:\n" + installLog
		}
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set " + RequireEnv + "=1 to make this a failure")
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // root in containers; the pages are our own test servers
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	if len(o.TrustSPKIPins) > 0 {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(o.TrustSPKIPins, ",")))
	}
	if o.DBSC {
		features := DBSCFeaturesNoQuota
		if o.DBSCQuota {
			features = DBSCFeatures
		}
		opts = append(opts, chromedp.Flag("enable-features", features))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// Start the browser on the context without a deadline: the browser
	// lives as long as the context of the first Run (see chromedp.NewContext).
	start := make(chan error, 1)
	go func() { start <- chromedp.Do(ctx) }()
	select {
	case err := <-start:
		if err != nil {
			t.Fatalf("browsertest: start %s: %v", path, err)
		}
	case <-time.After(Timeout):
		t.Fatalf("browsertest: %s did not start within %v", path, Timeout)
	}
	ctx, cancelTimeout := context.WithTimeout(ctx, Timeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

// find returns the browser binary to use, or "".
func find() string {
	if p := os.Getenv(PathEnv); p != "" {
		return p
	}
	if info, err := os.Stat("/usr/bin/chromium"); err == nil && !info.IsDir() {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// install tries apt-get once per test binary, as root only, and returns the
// browser it installed or "".
func install(t testing.TB) string {
	installOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		aptGet, err := exec.LookPath("apt-get")
		if err != nil {
			return
		}
		t.Logf("browsertest: no Chromium; running apt-get install -y chromium")
		ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, aptGet, "install", "-y", "--no-install-recommends", "chromium")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			installLog = lastLines(string(out), 20) + "\n" + err.Error()
		}
	})
	return find()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Step runs the actions of one named step of a test in the browser of
// ctx, and ends the test with the step's name when one fails.
func Step(t testing.TB, ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
