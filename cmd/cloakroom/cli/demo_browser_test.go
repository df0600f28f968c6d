package cli

import (
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
