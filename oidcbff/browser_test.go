package oidcbff_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/oidcbff"
)

// screenshotPath is the docs' picture of the gateway's login page with a
// provider's button.
var screenshotPath = filepath.Join("..", "docs", "img", "oidc-login.png")

// spaFiles is a single-page app without any OIDC library: a "Log in"
// button, the user from /auth/session, an API call, a logout form.
var spaFiles = map[string]string{
	"index.html": `<!doctype html><meta charset="utf-8"><title>SPA</title>
<main id="app">loading</main>
<script src="/app.js"></script>`,
	"app.js": `
const app = document.getElementById("app");
fetch("/auth/session").then(async (r) => {
  if (r.status === 401) {
    app.innerHTML = '<a id="login" href="/auth/login?return_to=%2Fhome">Log in</a>';
    return;
  }
  const s = await r.json();
  const api = await (await fetch("/api/whoami")).json();
  app.innerHTML = '<p id="user"></p><p id="api"></p>' +
    '<form method="post" action="/auth/logout"><input type="hidden" name="csrf_token"><button id="logout">Log out</button></form>';
  document.getElementById("user").textContent = s.user + " " + s.email;
  document.getElementById("api").textContent = "upstream saw " + api.user + (api.bearer ? " with the access token" : "");
  document.querySelector("input[name=csrf_token]").value = s.csrf_token;
});
`,
}

// servingSPA has a gateway serve spaFiles to everyone on plain
// http://localhost, where Chromium accepts __Host- and Secure cookies.
func servingSPA(t *testing.T) func(*gateway.Config) {
	t.Helper()
	static := t.TempDir()
	for name, content := range spaFiles {
		if err := os.WriteFile(filepath.Join(static, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func(c *gateway.Config) {
		c.TLS = false
		c.Static = static
		c.PublicPaths = []string{"/"}
	}
}

// TestBrowserLoginThroughProvider drives a real Chromium: the SPA's "Log
// in" button, the gateway's login page, the provider's login form (the
// zitadel example OP), the callback, the app with a relayed API call, and
// logout through the provider's end-session endpoint back to the login
// page. Page script never sees a cookie or a token.
func TestBrowserLoginThroughProvider(t *testing.T) {
	ctx := browsertest.New(t)
	var zp *zitadelProvider
	e := newEnvWith(t, 1, func(urls []string) *provider {
		zp = newZitadelProvider(t, urls)
		return zp.provider
	}, servingSPA(t), func(c *oidcbff.Config) { c.Providers[0].DisplayName = "Zitadel" })
	base := e.nodes[0].client.PostLogoutURL()
	base = strings.TrimSuffix(base, "/auth/login")

	text := func(id string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}

	browsertest.Step(t, ctx, "the SPA, logged out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
	browsertest.Step(t, ctx, "its Log in button", chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("login-zitadel")))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot: %v", err)
	}
	// The tracked picture is rewritten only on request (or when missing).
	if _, err := os.Stat(screenshotPath); err != nil || os.Getenv("CLOAKROOM_SCREENSHOTS") == "1" {
		if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	browsertest.Step(t, ctx, "Sign in with the provider", chromedp.Click(chromedp.ID("login-zitadel")), chromedp.WaitVisible(chromedp.ID("username")))
	if loc := location(); !strings.HasPrefix(loc, zp.issuer+"login/username") {
		t.Fatalf("the provider's login page is at %s", loc)
	}
	browsertest.Step(t, ctx, "the provider's login form",
		chromedp.SendKeys(chromedp.ID("username"), zp.username),
		chromedp.SendKeys(chromedp.ID("password"), zitadelPassword),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("user")))
	if loc := location(); loc != base+"/home" {
		t.Errorf("after the callback at %s, want the return_to page", loc)
	}
	if got := text("user"); got != "zitadel:id1 "+zitadelEmail {
		t.Errorf("the app shows %q", got)
	}
	browsertest.Step(t, ctx, "the relayed API call", chromedp.WaitVisible(chromedp.ID("api")))
	if got := text("api"); got != "upstream saw zitadel:id1 with the access token" {
		t.Errorf("API: %q", got)
	}
	cookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)`))
	if err != nil || strings.Contains(cookies, "session") || strings.Contains(cookies, "oidc") {
		t.Errorf("page script sees %q (%v)", cookies, err)
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range e.p.tokens.all() {
		if strings.Contains(html, tok) {
			t.Error("a provider token is in the page")
		}
	}

	browsertest.Step(t, ctx, "logout through the provider", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if loc := location(); loc != base+"/auth/login" {
		t.Errorf("after logout at %s, want the login page", loc)
	}
	if r := e.browser(e.nodes[0]).fetch(http.MethodGet, "/auth/session"); r.Status != http.StatusUnauthorized {
		t.Error("no session expected")
	}
	browsertest.Step(t, ctx, "logged out in the SPA", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
}

// TestBrowserLogoutReachesProviderSession: RP-initiated logout must reach
// the provider's own session. The provider runs on a sibling of the
// gateway's host (localhost, another port) and sets its session cookie when
// the user signs in there. Chromium signs in to the SPA through the
// provider, then logs out with the SPA's form, which the gateway answers
// with a redirect to the provider's end-session endpoint: that request must
// still carry the provider's cookie. With Clear-Site-Data: "cookies" the
// logout answer cleared every cookie of the host, the provider's included,
// before the browser got there, and the provider's session lived on.
func TestBrowserLogoutReachesProviderSession(t *testing.T) {
	for _, from := range []string{"the SPA", "the account page"} {
		t.Run(from, func(t *testing.T) { testBrowserLogoutReachesProviderSession(t, from == "the account page") })
	}
}

// testBrowserLogoutReachesProviderSession logs out with the SPA's logout
// form or, with fromAccountPage, the logout button of the gateway's own
// account page, whose Content-Security-Policy (form-action) must let the
// logout's redirect on to the provider.
func testBrowserLogoutReachesProviderSession(t *testing.T, fromAccountPage bool) {
	ctx := browsertest.New(t)
	var zp *zitadelProvider
	e := newEnvWith(t, 1, func(urls []string) *provider {
		zp = newZitadelProviderOn(t, "localhost", urls)
		return zp.provider
	}, servingSPA(t))
	base := strings.TrimSuffix(e.nodes[0].client.PostLogoutURL(), "/auth/login")
	if !strings.HasPrefix(base, "http://localhost:") || !strings.HasPrefix(zp.issuer, "http://localhost:") || strings.HasPrefix(zp.issuer, base+"/") {
		t.Fatalf("the gateway (%s) and the provider (%s) must be on one host, two ports", base, zp.issuer)
	}

	providerCookie := func() string {
		t.Helper()
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{zp.issuer}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Cookies {
			if c.Name == providerSessionCookie {
				return c.Value
			}
		}
		return ""
	}

	browsertest.Step(t, ctx, "the SPA's Log in button", chromedp.Navigate(base+"/"), chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("login-zitadel")))
	browsertest.Step(t, ctx, "Sign in with the provider", chromedp.Click(chromedp.ID("login-zitadel")), chromedp.WaitVisible(chromedp.ID("username")))
	browsertest.Step(t, ctx, "the provider's login form",
		chromedp.SendKeys(chromedp.ID("username"), zp.username),
		chromedp.SendKeys(chromedp.ID("password"), zitadelPassword),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("logout")))
	issued, _ := zp.session.seen()
	if held := providerCookie(); len(issued) != 1 || held != issued[0] {
		t.Fatalf("the provider set %d session cookies, the browser holds %q: want one, held", len(issued), held)
	}

	if fromAccountPage {
		browsertest.Step(t, ctx, "the account page", chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(chromedp.ID("devices")))
	}
	browsertest.Step(t, ctx, "logout through the provider", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	_, atEndSession := zp.session.seen()
	if len(atEndSession) != 1 {
		t.Fatalf("the provider's end-session endpoint was reached %d times, want 1", len(atEndSession))
	}
	if atEndSession[0] != issued[0] {
		t.Errorf("the provider's end-session endpoint got session cookie %q, want the one it set at sign-in: the logout cleared it on the way", atEndSession[0])
	}
	if left, err := e.nodes[0].manager.Devices(context.Background(), "zitadel:"+zitadelUserID); err != nil || len(left) != 0 {
		t.Errorf("gateway sessions left after logout: %d (%v)", len(left), err)
	}
}
