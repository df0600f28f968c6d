package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// TestBrowserErrorPages drives Chromium to the error and notice pages a
// user can meet, checks that each is the styled page with its message and
// a way back, and takes the docs' screenshots of them (rewritten with
// CLOAKROOM_SCREENSHOTS=1, or when missing): the throttle page with the
// wait, the 404 page, the account page with a refused password change,
// and the 431 page for oversized cookies.
func TestBrowserErrorPages(t *testing.T) {
	ctx := browsertest.New(t)
	_, base := newPlainEnv(t)
	text := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	styled := func(page string) {
		t.Helper()
		if bg := text(`getComputedStyle(document.body).backgroundColor`); bg != "rgb(244, 246, 250)" {
			t.Errorf("%s: the stylesheet did not apply (background %q)", page, bg)
		}
	}

	// Bob guesses wrong until the sign-in is throttled.
	for guesses := 0; ; guesses++ {
		if guesses == 20 {
			t.Fatal("not throttled after 20 wrong guesses")
		}
		browsertest.Step(t, ctx, "wrong guess",
			chromedp.Navigate(base+"/auth/login"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "bob"),
			chromedp.SendKeys(chromedp.ID("password"), "wrong password!"),
			chromedp.Click(chromedp.ID("login-submit")),
			chromedp.WaitVisible(chromedp.ID("error")))
		if msg := text(`document.getElementById("error").textContent`); strings.HasPrefix(msg, "Too many attempts") {
			if !strings.Contains(msg, "Try again in 30 seconds.") {
				t.Errorf("the throttle page says %q, want the wait", msg)
			}
			break
		}
	}
	styled("throttle page")
	screenshot(t, ctx, "throttle-page.png")

	browsertest.Step(t, ctx, "unknown auth path", chromedp.Navigate(base+"/auth/nope"), chromedp.WaitVisible(chromedp.ID("way-back")))
	if h1 := text(`document.querySelector("h1").textContent`); h1 != "Page not found" {
		t.Errorf("404 page heading %q", h1)
	}
	styled("404 page")
	screenshot(t, ctx, "not-found-page.png")

	browsertest.Step(t, ctx, "sign in",
		chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("password-form")))
	browsertest.Step(t, ctx, "wrong current password",
		chromedp.SendKeys(chromedp.CSS(`#password-form input[name=current_password]`), "not my password"),
		chromedp.SendKeys(chromedp.CSS(`#password-form input[name=new_password]`), "a brand new passphrase"),
		chromedp.Click(chromedp.ID("change-password")),
		chromedp.WaitVisible(chromedp.ID("error")))
	if msg := text(`document.getElementById("error").textContent`); msg != "The current password is wrong." {
		t.Errorf("the account page says %q", msg)
	}
	// The message sits by the password form, which is there to try again.
	if near := text(`document.getElementById("error").nextElementSibling?.id ?? ""`); near != "password-form" {
		t.Errorf("the error is not next to the password form (next: %q)", near)
	}
	styled("account page with an error")
	// Scrolled to the form, as a user sees it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("password").scrollIntoView(), true`)); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "account-error.png")

	// Another app on this host fills the cookie jar.
	if n := text(`for (let i = 0; i < 5; i++) document.cookie = "pad" + i + "=" + "x".repeat(4000) + "; path=/"; String(document.cookie.length)`); len(n) < 5 || n < "20000" {
		t.Fatalf("the page's cookies are %s bytes, want 20000 or more", n)
	}
	browsertest.Step(t, ctx, "too many cookies", chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h1, msg := text(`document.querySelector("h1").textContent`), text(`document.getElementById("error").textContent`); h1 != "Too many cookies" || !strings.Contains(msg, "16 KiB") {
		t.Errorf("431 page: %q, %q", h1, msg)
	}
	styled("431 page")
	screenshot(t, ctx, "too-many-cookies.png")
}

// screenshot writes the tab's full page to docs/img/name when asked
// (CLOAKROOM_SCREENSHOTS=1) or when the file is missing, so a test run
// leaves the work tree clean.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	path := filepath.Join("..", "docs", "img", name)
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
