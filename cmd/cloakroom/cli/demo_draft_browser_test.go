package cli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// draftScreenshot is the docs' picture of the demo after its session was
// ended from another device, the note kept. It is rewritten only with
// CLOAKROOM_SCREENSHOTS=1 (or when missing), so a test run leaves the work
// tree clean.
var draftScreenshot = filepath.Join("..", "..", "..", "docs", "img", "signed-out-draft.png")

// TestDemoKeepsDraftWhenSignedOutElsewhere: alice is writing a note in the
// demo when another of her devices logs out the others. Posting does not
// lose the note: the page says she was signed out and why, keeps the text
// as a draft, and offers a sign-in that comes back to the page, where the
// draft is restored and can be posted.
func TestDemoKeepsDraftWhenSignedOutElsewhere(t *testing.T) {
	clearEnv(t)
	d := start(t, "demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn")
	d.waitFor(t, "the demo banner", func() bool { return strings.Contains(d.stdout.String(), "Press Ctrl+C") })
	out := parseDemo(t, d.stdout.String())
	app := strings.Replace(out.app, "//127.0.0.1:", "//localhost:", 1) // as printed
	base := strings.TrimSuffix(out.app, "/")

	ctx := browsertest.New(t)
	do := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	// waitFor polls expr, riding out the navigations it may cause; the
	// context's deadline (browsertest.Timeout) bounds it.
	waitFor := func(expr string) {
		t.Helper()
		for {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
			if err == nil && v {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("waiting for %s: %v", expr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	signIn := func() {
		t.Helper()
		waitFor(`location.pathname === "/auth/login" && !!document.getElementById("username")`)
		do(chromedp.SetValue(chromedp.ID("username"), "alice"),
			chromedp.SetValue(chromedp.ID("password"), out.passwords["alice"]),
			chromedp.Click(chromedp.ID("login-submit")))
		waitFor(`location.pathname === "/" && !document.getElementById("post").disabled`)
	}

	do(chromedp.Navigate(app))
	signIn()
	const note = "half-written thought, typed before lunch"
	do(chromedp.SendKeys(chromedp.ID("note-text"), note))

	// Alice's phone logs out her other devices, this browser among them.
	c := newClient(t)
	cookie, csrf := login(t, c, base, "alice", out.passwords["alice"])
	req, _ := http.NewRequest(http.MethodPost, base+"/auth/sessions/revoke-others", nil)
	req.Header.Set("Cookie", cookie)
	req.Header.Set("X-CSRF-Token", csrf)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("revoke-others from the phone: %d", res.StatusCode)
	}

	do(chromedp.Click(chromedp.ID("post")))
	waitFor(`!document.getElementById("signed-out").hidden`)
	message := eval(`document.getElementById("signed-out-text").textContent`)
	for _, want := range []string{"signed out from another device", "kept as a draft"} {
		if !strings.Contains(message, want) {
			t.Errorf("the signed-out notice lacks %q: %q", want, message)
		}
	}
	if got := eval(`document.getElementById("note-text").value`); got != note {
		t.Errorf("the note box holds %q after the refused post, want the note", got)
	}
	if got := eval(`sessionStorage.getItem("cloakroom-demo:draft") || ""`); got != note {
		t.Errorf("the kept draft is %q", got)
	}
	if got := eval(`document.getElementById("sign-in-again").getAttribute("href")`); got != "/auth/login?return_to=%2F&ended=session" {
		t.Errorf("the sign-in link is %q", got)
	}
	if path := eval(`location.pathname`); path != "/" {
		t.Errorf("the page went to %s by itself", path)
	}
	saveScreenshot(t, ctx, draftScreenshot)

	do(chromedp.Click(chromedp.ID("sign-in-again")))
	waitFor(`location.pathname === "/auth/login" && !!document.getElementById("notice")`)
	if got := eval(`document.getElementById("notice").textContent`); !strings.Contains(got, "signed out from another device") {
		t.Errorf("the sign-in page says %q", got)
	}
	signIn()
	waitFor(`document.getElementById("note-text").value !== ""`)
	if got := eval(`document.getElementById("note-text").value`); got != note {
		t.Errorf("after signing in again the note box holds %q", got)
	}
	if status := eval(`document.getElementById("status").textContent`); !strings.Contains(status, "draft is back") {
		t.Errorf("after signing in again the page says %q", status)
	}
	do(chromedp.Click(chromedp.ID("post")))
	waitFor(`document.getElementById("notes").textContent.includes("half-written thought")`)
	if got := eval(`sessionStorage.getItem("cloakroom-demo:draft") || ""`); got != "" {
		t.Errorf("the draft outlived its post: %q", got)
	}
}

// saveScreenshot writes a full-page PNG of the tab to path when asked
// (CLOAKROOM_SCREENSHOTS=1) or when the file is missing.
func saveScreenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil && os.Getenv("CLOAKROOM_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}
