package cli

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// TestDemoInBrowser walks the newcomer's path through the demo in a real
// browser: redirected to login, log in, the app shows who you are and takes
// a note, the devices page lists this browser, logout returns to login. The
// page must throw no script error and see no cookie from script.
func TestDemoInBrowser(t *testing.T) {
	clearEnv(t)
	d := start(t, "demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn")
	d.waitFor(t, "the demo banner", func() bool { return strings.Contains(d.stdout.String(), "Press Ctrl+C") })
	out := parseDemo(t, d.stdout.String())
	app := strings.Replace(out.app, "//127.0.0.1:", "//localhost:", 1) // as printed

	ctx := browsertest.New(t)
	var mu sync.Mutex
	var scriptErrors []string
	chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			scriptErrors = append(scriptErrors, e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == "error" {
				scriptErrors = append(scriptErrors, "console.error")
			}
		}
	})
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
	// waitFor polls expr, riding out the navigations it may cause.
	waitFor := func(expr string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
			if err == nil && v {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %v (at %s)", expr, err, eval("location.href"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	do(chromedp.Navigate(app))
	waitFor(`location.pathname === "/auth/login" && !!document.getElementById("username")`)
	do(chromedp.SetValue(chromedp.ID("username"), "alice"),
		chromedp.SetValue(chromedp.ID("password"), out.passwords["alice"]),
		chromedp.Click(chromedp.ID("login-submit")))
	waitFor(`location.pathname === "/" && !!document.querySelector("#who .badge")`)
	if who := eval(`document.getElementById("who").textContent`); !strings.Contains(who, "alice") {
		t.Errorf("the app shows %q", who)
	}
	if c := eval(`document.cookie`); c != "" {
		t.Errorf("script sees cookies: %q", c)
	}

	// A note with markup is shown as text, not parsed.
	do(chromedp.SetValue(chromedp.ID("note-text"), `<img src=x onerror="window.pwned=1">`), chromedp.Click(chromedp.ID("post")))
	waitFor(`document.getElementById("notes").textContent.includes("<img src=x")`)
	if eval(`String(window.pwned)`) != "undefined" || eval(`String(document.querySelectorAll("#notes img").length)`) != "0" {
		t.Error("a note's markup was rendered")
	}

	do(chromedp.Click(`a[href="/auth/account"]`))
	waitFor(`location.pathname === "/auth/account" && !!document.getElementById("devices")`)
	if page := eval(`document.body.innerText`); !strings.Contains(page, "alice") || !strings.Contains(page, "Chrome") {
		t.Errorf("the devices page does not list this browser:\n%s", page)
	}

	do(chromedp.Navigate(app))
	waitFor(`!!document.querySelector("#who .badge") && !document.getElementById("logout").disabled`)

	// Another tab logs out the other devices, which renews this session's
	// token: the page's CSRF token is stale. Posting still works, and the
	// page says what happened.
	eval(`window.rotated = ""; fetch("/auth/sessions/revoke-others", {method: "POST", headers: {"X-CSRF-Token": state.csrf}}).then(r => window.rotated = String(r.status)); ""`)
	waitFor(`window.rotated === "200"`)
	do(chromedp.SetValue(chromedp.ID("note-text"), "posted with a stale token"), chromedp.Click(chromedp.ID("post")))
	waitFor(`document.getElementById("notes").textContent.includes("posted with a stale token")`)
	if status := eval(`document.getElementById("status").textContent`); !strings.Contains(status, "renewed") {
		t.Errorf("after a stale CSRF token the page says %q, want an explanation", status)
	}

	// A logout the gateway could not complete is not shown as a logout.
	eval(`window.realFetch = window.fetch; window.fetch = (u, i) => u === "/auth/logout" ? Promise.resolve(new Response("{}", {status: 503})) : window.realFetch(u, i); ""`)
	do(chromedp.Click(chromedp.ID("logout")))
	waitFor(`document.getElementById("status").textContent.includes("Logging out failed") && !document.getElementById("logout").disabled`)
	if path := eval(`location.pathname`); path != "/" {
		t.Errorf("after a failed logout the page went to %s", path)
	}
	eval(`window.fetch = window.realFetch; ""`)
	do(chromedp.Click(chromedp.ID("logout")))
	waitFor(`location.pathname === "/auth/login"`)
	mu.Lock()
	if len(scriptErrors) > 0 {
		t.Errorf("script errors: %q", scriptErrors)
	}
	mu.Unlock()
	// The session is gone: the app sends us to login again.
	do(chromedp.Navigate(app))
	waitFor(`location.pathname === "/auth/login"`)
}

// TestDemoPasskeyInBrowser: the demo offers passkeys on the printed
// localhost URL. bob signs in with his password, adds a passkey on the
// account page (a virtual authenticator) and signs out; his password
// alone now leads to the passkey step, not a session (the banner says
// so); he signs in again with the passkey alone, typing no name; the app
// then shows him. Each
// WebAuthn ceremony has its own timeout.
func TestDemoPasskeyInBrowser(t *testing.T) {
	clearEnv(t)
	d := start(t, "demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "warn")
	d.waitFor(t, "the demo banner", func() bool { return strings.Contains(d.stdout.String(), "Press Ctrl+C") })
	if !strings.Contains(d.stdout.String(), "Sign in with a passkey") || !strings.Contains(d.stdout.String(), "password alone no longer signs in") {
		t.Errorf("the banner does not mention passkeys:\n%s", d.stdout)
	}
	out := parseDemo(t, d.stdout.String())
	login := strings.Replace(out.login, "//127.0.0.1:", "//localhost:", 1) // as printed
	app := strings.Replace(out.app, "//127.0.0.1:", "//localhost:", 1)

	ctx := browsertest.New(t)
	browsertest.VirtualAuthenticator(t, ctx)
	ceremony := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		browsertest.Step(t, cctx, name, actions...)
	}
	browsertest.Step(t, ctx, "password",
		chromedp.Navigate(login+"?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("passkey-signin")),
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), out.passwords["bob"]),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("passkey-form")))
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#totp-form, form[action$='/account/totp']").length`)); n == 0 {
		t.Error("the demo's account page offers no authenticator app")
	}
	browsertest.Step(t, ctx, "name the passkey",
		chromedp.SendKeys(chromedp.ID("passkey-name"), "demo laptop"),
		chromedp.Click(chromedp.ID("passkey-add")),
		chromedp.WaitVisible(chromedp.ID("passkey-create")))
	ceremony("create the passkey",
		chromedp.Click(chromedp.ID("passkey-create")),
		chromedp.WaitVisible(chromedp.ID("passkey-list")))
	browsertest.Step(t, ctx, "sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	// With a passkey, bob's password alone opens no session: the passkey
	// is asked after it, as the banner says.
	browsertest.Step(t, ctx, "password alone",
		chromedp.Navigate(login),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), out.passwords["bob"]),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("passkey-second-factor")))
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#second-factor-form, #logout").length`)); n != 0 {
		t.Error("after bob's password alone: a code form or a session")
	}
	browsertest.Step(t, ctx, "login page", chromedp.Navigate(login), chromedp.WaitVisible(chromedp.ID("passkey-signin")))
	ceremony("sign in with the passkey", chromedp.Click(chromedp.ID("passkey-signin")))
	// The script navigates to the app: poll, riding out the navigation,
	// within the ceremony's own timeout.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		v, err := chromedp.Run(cctx, chromedp.Evaluate[bool](`location.pathname === "/" && document.getElementById("who").textContent.includes("bob")`))
		if err == nil && v {
			break
		}
		if cctx.Err() != nil {
			href, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + ": " + document.body.innerText`))
			t.Fatalf("the passkey sign-in did not reach the app: %s", href)
		}
		time.Sleep(50 * time.Millisecond)
	}
	who, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("who").textContent`))
	if err != nil || !strings.Contains(who, "bob") {
		t.Errorf("after the passkey the app shows %q (%v)", who, err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.origin`)); loc+"/" != app {
		t.Errorf("signed in at %s, want %s", loc, app)
	}
}
