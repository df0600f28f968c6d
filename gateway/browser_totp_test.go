package gateway_test

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// TestBrowserTOTPFlow drives Chromium through the whole second factor:
// sign in with the password, set up an authenticator app from the account
// page (the QR code drawn, the secret read off the page, a first code
// confirming it, the recovery codes shown), sign out, then sign in with
// the password and a code. It takes the docs' screenshots of the
// enrolment and the second-factor pages.
func TestBrowserTOTPFlow(t *testing.T) {
	ctx := browsertest.New(t)
	e := newTOTPEnv(t, func(c *gateway.Config) { c.TLS = false })
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	base := "http://localhost:" + u.Port()
	text := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	signIn := func() {
		t.Helper()
		browsertest.Step(t, ctx, "password",
			chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "bob"),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("login-submit")))
	}

	signIn()
	browsertest.Step(t, ctx, "start enrolment",
		chromedp.WaitVisible(chromedp.ID("totp-start")),
		chromedp.Click(chromedp.ID("totp-start")),
		chromedp.WaitVisible(chromedp.ID("totp-confirm-form")))
	// The QR code is an image the browser could load and draw.
	width, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise(done => {
		const img = document.getElementById("totp-qr");
		const size = () => done(img.naturalWidth ? String(img.naturalWidth) : "broken");
		if (img.complete) size(); else { img.onload = size; img.onerror = () => done("error"); }
	})`, chromedp.EvalAwaitPromise))
	if err != nil || width != "240" {
		t.Fatalf("QR code natural width %s (%v), want 240", width, err)
	}
	secret := text(`document.getElementById("totp-secret").textContent`)
	if !strings.HasPrefix(text(`document.getElementById("totp-uri").textContent`), "otpauth://totp/cloakroom:bob?") {
		t.Errorf("otpauth URI %q", text(`document.getElementById("totp-uri").textContent`))
	}
	screenshot(t, ctx, "totp-enrolment.png")
	browsertest.Step(t, ctx, "confirm",
		chromedp.SendKeys(chromedp.ID("code"), e.totpCode(secret)),
		chromedp.Click(chromedp.ID("totp-confirm")),
		chromedp.WaitVisible(chromedp.ID("recovery-codes")))
	if n := text(`String(document.querySelectorAll("#recovery-codes li").length)`); n != "10" {
		t.Errorf("%s recovery codes shown, want 10", n)
	}
	browsertest.Step(t, ctx, "back to the account",
		chromedp.Click(chromedp.ID("totp-done")),
		chromedp.WaitVisible(chromedp.ID("totp-status")))
	if s := text(`document.getElementById("totp-status").textContent`); !strings.HasPrefix(s, "On:") {
		t.Errorf("account page says %q", s)
	}
	browsertest.Step(t, ctx, "sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))

	e.clock.Advance(accounts.TOTPPeriod) // a new code
	signIn()
	browsertest.Step(t, ctx, "code page", chromedp.WaitVisible(chromedp.ID("second-factor-form")))
	if text(`document.cookie`) != "" {
		t.Error("a cookie is readable by the page between the factors")
	}
	screenshot(t, ctx, "second-factor.png")
	browsertest.Step(t, ctx, "wrong code",
		chromedp.SendKeys(chromedp.ID("code"), "000000"),
		chromedp.Click(chromedp.ID("code-submit")),
		chromedp.WaitVisible(chromedp.ID("error")))
	browsertest.Step(t, ctx, "right code",
		chromedp.SendKeys(chromedp.ID("code"), e.totpCode(secret)),
		chromedp.Click(chromedp.ID("code-submit")),
		chromedp.WaitVisible(chromedp.ID("totp-status")))
	if got := text(`document.querySelector("h1").textContent`); got != "Your account" {
		t.Errorf("after the code: %q", got)
	}
	if amr := e.amrOfLastSignIn(); amr != "pwd otp" {
		t.Errorf("amr = %q", amr)
	}
}
