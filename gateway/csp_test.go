package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// injectedSPA is an SPA whose page carries a stored-XSS payload: an inline
// event handler and an inline script, as the lab's guestbook comment does.
func injectedSPA(t *testing.T) string {
	dir := t.TempDir()
	files := map[string]string{
		"index.html": `<!doctype html><title>SPA</title><h1 id="app">app</h1>
<img id="x" src="/missing.png" onerror="document.title='pwned-handler'">
<script>document.title='pwned-inline'</script>
<script src="/app.js"></script>`,
		"app.js": `document.getElementById("app").dataset.ran = "yes";`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCSPBlocksInjectedHandler loads the SPA in Chromium: the injected
// inline handler and inline script do not run, the app's own script does,
// and the browser's violation report reaches /auth/csp-report, where it is
// logged and counted.
func TestCSPBlocksInjectedHandler(t *testing.T) {
	ctx := browsertest.New(t)
	e := newEnv(t, func(c *gateway.Config) {
		c.TLS, c.Static, c.PublicPaths = false, injectedSPA(t), []string{"/"}
	})
	srv := httptest.NewServer(e.gw.Handler())
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	base := "http://localhost:" + u.Port()

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("app"))); err != nil {
		t.Fatal(err)
	}
	state, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.title, document.getElementById("app").dataset.ran || ""]`))
	if err != nil {
		t.Fatal(err)
	}
	if state[0] != "SPA" {
		t.Errorf("the injected code ran: title %q", state[0])
	}
	if state[1] != "yes" {
		t.Error("the app's own script did not run under the CSP")
	}
	// Reports are sent in the background: wait for them, bounded.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(e.logs.String(), `"csp violation"`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	var reports []map[string]any
	for _, ev := range e.logs.events("csp violation") {
		reports = append(reports, ev)
	}
	if len(reports) == 0 {
		t.Fatal("no CSP violation report reached /auth/csp-report")
	}
	found := false
	for _, ev := range reports {
		if d, _ := ev["directive"].(string); strings.HasPrefix(d, "script-src") {
			found = true
		}
	}
	if !found {
		t.Errorf("no script-src violation among the reports: %v", reports)
	}
}

// TestCSPHeadersAndReportEndpoint checks the SPA's headers (enforced and
// report-only) and the report endpoint's limits: both report formats are
// accepted and counted, oversized bodies get 413, other types 415, junk
// 400, and a flood 429; nothing is reflected.
func TestCSPHeadersAndReportEndpoint(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	r := b.get("/", "Sec-Fetch-Mode", "navigate")
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'",
		"report-uri /auth/csp-report", "report-to csp-endpoint"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if r.Header.Get("Reporting-Endpoints") != `csp-endpoint="/auth/csp-report"` || r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Referrer-Policy") == "" {
		t.Errorf("headers %v", r.Header)
	}
	if asset := b.get("/app.js"); asset.Header.Get("Content-Security-Policy") == "" {
		t.Error("a static file has no CSP")
	}

	ro := newEnv(t, func(c *gateway.Config) { c.CSPReportOnly = true })
	r = ro.minted("alice").get("/", "Sec-Fetch-Mode", "navigate")
	if r.Header.Get("Content-Security-Policy") != "" || !strings.Contains(r.Header.Get("Content-Security-Policy-Report-Only"), "script-src 'self'") {
		t.Errorf("report-only mode: %v", r.Header)
	}

	anon := e.browser()
	post := func(contentType, body string) int {
		return anon.do(http.MethodPost, "/auth/csp-report", contentType, body).Status
	}
	legacy := `{"csp-report":{"document-uri":"https://app.test/","violated-directive":"script-src-attr","effective-directive":"script-src-attr","blocked-uri":"inline","script-sample":"<b>\n injected"}}`
	modern := `[{"type":"csp-violation","body":{"documentURL":"https://app.test/","effectiveDirective":"script-src-elem","blockedURL":"inline","sample":"x"}}]`
	if s := post("application/csp-report", legacy); s != http.StatusNoContent {
		t.Errorf("legacy report: %d", s)
	}
	if s := post("application/reports+json", modern); s != http.StatusNoContent {
		t.Errorf("Reporting API report: %d", s)
	}
	assertMetric(t, e, `cloakroom_csp_reports_total{directive="script-src-attr"}`, 1)
	assertMetric(t, e, `cloakroom_csp_reports_total{directive="script-src-elem"}`, 1)
	if strings.Contains(e.logs.String(), "\n injected") {
		t.Error("a newline from the report reached the log unescaped")
	}
	if s := post("application/csp-report", `{"csp-report":{"blocked-uri":"`+strings.Repeat("a", 20<<10)+`"}}`); s != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized report: %d, want 413", s)
	}
	if s := post("text/plain", legacy); s != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain report: %d, want 415", s)
	}
	if s := post("application/json", `{"no":"report"}`); s != http.StatusBadRequest {
		t.Errorf("junk report: %d, want 400", s)
	}
	// The clock stands still: the burst is all a flood gets.
	limited := 0
	for range 60 {
		if post("application/csp-report", legacy) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Error("60 reports at once were never rate-limited")
	}
}
