package oidcbff_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// TestBrowserLoginThroughProvider drives a real Chromium: the SPA's "Log
// in" button, the gateway's login page, the provider's login form (the
// zitadel example OP), the callback, the app with a relayed API call, and
// logout through the provider's end-session endpoint back to the login
// page. Page script never sees a cookie or a token.
func TestBrowserLoginThroughProvider(t *testing.T) {
	ctx := browsertest.New(t)
	static := t.TempDir()
	for name, content := range spaFiles {
		if err := os.WriteFile(filepath.Join(static, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var zp *zitadelProvider
	e := newEnvWith(t, 1, func(urls []string) *provider {
		zp = newZitadelProvider(t, urls)
		return zp.provider
	}, func(c *gateway.Config) {
		c.TLS = false
		c.Static = static
		c.PublicPaths = []string{"/"}
	}, func(c *oidcbff.Config) { c.Providers[0].DisplayName = "Zitadel" })
	base := e.nodes[0].client.PostLogoutURL()
	base = strings.TrimSuffix(base, "/auth/login")

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
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

	step("the SPA, logged out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
	step("its Log in button", chromedp.Click(chromedp.ID("login")), chromedp.WaitVisible(chromedp.ID("login-zitadel")))
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

	step("Sign in with the provider", chromedp.Click(chromedp.ID("login-zitadel")), chromedp.WaitVisible(chromedp.ID("username")))
	if loc := location(); !strings.HasPrefix(loc, zp.issuer+"login/username") {
		t.Fatalf("the provider's login page is at %s", loc)
	}
	user := "test-user@127.0.0.1"
	step("the provider's login form",
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), zitadelPassword),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("user")))
	if loc := location(); loc != base+"/home" {
		t.Errorf("after the callback at %s, want the return_to page", loc)
	}
	if got := text("user"); got != "zitadel:id1 "+zitadelEmail {
		t.Errorf("the app shows %q", got)
	}
	step("the relayed API call", chromedp.WaitVisible(chromedp.ID("api")))
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

	step("logout through the provider", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if loc := location(); loc != base+"/auth/login" {
		t.Errorf("after logout at %s, want the login page", loc)
	}
	if r := e.browser(e.nodes[0]).fetch(http.MethodGet, "/auth/session"); r.Status != http.StatusUnauthorized {
		t.Error("no session expected")
	}
	step("logged out in the SPA", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
}
