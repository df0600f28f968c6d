package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/signin"
)

// screenshotPath is where the account page screenshot for the docs goes.
var screenshotPath = filepath.Join("..", "docs", "img", "account-page.png")

const iPhoneSafari = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"

// TestBrowserFlow drives a real Chromium through the gateway: a protected
// page sends it to the login page, logging in comes back, the account page
// lists both devices, revoking the other one ends it, and logout ends this
// one. The gateway listens on plain http://localhost, where Chromium
// accepts __Host- and Secure cookies.
func TestBrowserFlow(t *testing.T) {
	ctx := browsertest.New(t)
	e, base := newPlainEnv(t)

	// Another device, logged in with a plain HTTP client.
	phone := plainLogin(t, base, iPhoneSafari)

	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	rows := func() []string {
		t.Helper()
		r, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#devices tbody tr")].map(r => r.innerText)`))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	browsertest.Step(t, ctx, "protected page", chromedp.Navigate(base+"/app/welcome"), chromedp.WaitVisible(chromedp.ID("login-form")))
	if got, want := location(), base+"/auth/login?return_to=%2Fapp%2Fwelcome"; got != want {
		t.Fatalf("redirected to %s, want %s", got, want)
	}
	styled, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
	if err != nil || styled != "rgb(244, 246, 250)" {
		t.Errorf("the stylesheet did not apply under the CSP: background %q (%v)", styled, err)
	}

	browsertest.Step(t, ctx, "login",
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("app")))
	if got := location(); got != base+"/app/welcome" {
		t.Fatalf("after login at %s, want the page asked for", got)
	}
	cookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil || strings.Contains(cookies, "session") {
		t.Errorf("page script sees cookies %q (%v); the session cookie must be HttpOnly", cookies, err)
	}

	browsertest.Step(t, ctx, "account page", chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(chromedp.ID("devices")))
	devices := rows()
	if len(devices) != 2 {
		t.Fatalf("account page lists %d devices, want 2: %q", len(devices), devices)
	}
	all := strings.Join(devices, "\n")
	for _, want := range []string{"Headless Chrome on Linux", "this device", "Safari on iPhone"} {
		if !strings.Contains(all, want) {
			t.Errorf("account page lacks %q: %q", want, devices)
		}
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatal("the screenshot is not a PNG")
	}
	// The tracked picture is rewritten only on request (or when missing),
	// so a test run leaves the work tree clean.
	if _, err := os.Stat(screenshotPath); err != nil || os.Getenv("CLOAKROOM_SCREENSHOTS") == "1" {
		if err := os.MkdirAll(filepath.Dir(screenshotPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	browsertest.Step(t, ctx, "revoke the phone",
		chromedp.Click(chromedp.CSS("tr.device:not(.current) button.revoke")),
		chromedp.WaitVisible(chromedp.ID("notice")))
	if devices := rows(); len(devices) != 1 || !strings.Contains(devices[0], "this device") {
		t.Errorf("after revoking: %q", devices)
	}
	if plainStatus(t, base, phone) != http.StatusUnauthorized {
		t.Error("the revoked phone session still works")
	}

	browsertest.Step(t, ctx, "logout", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if got := location(); got != base+"/auth/login?ended=logout" {
		t.Errorf("after logout at %s", got)
	}
	if left, err := e.manager.Devices(context.Background(), "alice"); err != nil || len(left) != 0 {
		t.Errorf("sessions left after logout: %d (%v)", len(left), err)
	}
	browsertest.Step(t, ctx, "protected again", chromedp.Navigate(base+"/app/welcome"), chromedp.WaitVisible(chromedp.ID("login-form")))
}

// newPlainEnv starts an env whose gateway also listens on plain
// http://localhost, where Chromium accepts __Host- and Secure cookies, and
// returns that listener's base URL.
func newPlainEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, func(c *gateway.Config) { c.TLS = false })
	srv := httptest.NewServer(e.gw.Handler())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return e, "http://localhost:" + u.Port()
}

// plainLogin logs alice in with a plain HTTP client and returns the token.
func plainLogin(t *testing.T, base, userAgent string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": "alice", "password": password})
	req, _ := http.NewRequest(http.MethodPost, base+"/auth/login", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	token := setCookieToken(t, resp.Header)
	if resp.StatusCode != http.StatusOK || token == "" {
		t.Fatalf("plain login: status %d", resp.StatusCode)
	}
	return token
}

func plainStatus(t *testing.T, base, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/auth/session", nil)
	req.Header.Set("Cookie", cookieName+"="+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBrowserLogoutKeepsKnownDevice: logging out must not take the
// known-device cookie with it. Chromium signs alice in with the login form
// (the gateway sets the device cookie) and logs out with the header's
// form; another client then spends alice's budget for unknown devices;
// alice, back in the browser she just logged out of, still signs in. With
// Clear-Site-Data: "cookies" the logout cleared the device cookie and she
// got "Too many attempts".
func TestBrowserLogoutKeepsKnownDevice(t *testing.T) {
	ctx := browsertest.New(t)
	e, base := newPlainEnv(t)

	signIn := func(name string) {
		t.Helper()
		browsertest.Step(t, ctx, name,
			chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.SendKeys(chromedp.ID("username"), "alice"),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("login-submit")),
			// The account page on success, the login page's error otherwise.
			chromedp.WaitVisible(chromedp.CSS("#devices, #error")))
		if msg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("error")?.innerText ?? ""`)); err != nil || msg != "" {
			t.Fatalf("%s: the login page says %q (%v)", name, msg, err)
		}
	}
	browserCookies := func() map[string]bool {
		t.Helper()
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, c := range res.Cookies {
			names[c.Name] = true
		}
		return names
	}

	signIn("first sign-in")
	if !browserCookies()[signin.DeviceCookie] {
		t.Fatalf("no %s after signing in with the form", signin.DeviceCookie)
	}
	browsertest.Step(t, ctx, "logout", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if left, err := e.manager.Devices(context.Background(), "alice"); err != nil || len(left) != 0 {
		t.Fatalf("sessions left after logout: %d (%v)", len(left), err)
	}
	after := browserCookies()
	if after[cookieName] {
		t.Error("the session cookie outlived the logout")
	}
	if !after[signin.DeviceCookie] {
		t.Errorf("the logout cleared %s from the browser", signin.DeviceCookie)
	}

	// Another client, with no device cookie, guesses until it is throttled.
	const maxGuesses = 20
	for guesses := 0; plainLoginStatus(t, base, "wrong password!") != http.StatusTooManyRequests; guesses++ {
		if guesses == maxGuesses {
			t.Fatalf("still not throttled after %d wrong guesses", maxGuesses)
		}
	}
	if status := plainLoginStatus(t, base, password); status != http.StatusTooManyRequests {
		t.Fatalf("an unknown device with the right password after the attack: %d, want 429", status)
	}

	signIn("sign-in after the attack, in the browser alice logged out of")
	if devices, err := e.manager.Devices(context.Background(), "alice"); err != nil || len(devices) != 1 {
		t.Errorf("alice's sessions after signing in again: %d (%v), want 1", len(devices), err)
	}
}

// plainLoginStatus posts a JSON login for alice with a plain HTTP client
// (no cookies, so an unknown device) and returns the status.
func plainLoginStatus(t *testing.T, base, pass string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": "alice", "password": pass})
	resp, err := http.Post(base+"/auth/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
