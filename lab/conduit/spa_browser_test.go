package conduit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// strictCSP is the policy the page must run under.
const strictCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'; report-uri /csp-report"

// TestSPAInBrowser drives the page in headless Chromium, served with the
// API on one origin under a strict CSP, through every action.
func TestSPAInBrowser(t *testing.T) {
	browser := browsertest.New(t)
	app, err := New(Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	var violations atomic.Int32
	api, files := app.API(), http.FileServerFS(SPA())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/"):
			api.ServeHTTP(w, r)
		case r.URL.Path == "/csp-report":
			violations.Add(1)
		default:
			w.Header().Set("Content-Security-Policy", strictCSP)
			files.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	e := &env{t: t, app: app, srv: srv}
	finn := e.register("finn")
	e.publish(finn, "Finn's first")

	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	last := func() Request {
		reqs := app.Requests()
		return reqs[len(reqs)-1]
	}
	// act clears #status, runs the actions and waits for status.
	act := func(status string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		evalJS[any](t, ctx, `document.getElementById("status").textContent = ""`)
		browsertest.Step(t, ctx, status, actions...)
		waitStatus(t, ctx, status)
	}

	browsertest.Step(t, ctx, "open", chromedp.Navigate(srv.URL+"/"))
	waitStatus(t, ctx, "signed-out")
	if got := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#articles li")].map(li => li.textContent)`); len(got) != 1 || got[0] != "Finn's first" {
		t.Errorf("signed-out list %q", got)
	}
	if !evalJS[bool](t, ctx, `document.getElementById("signed-in").hidden && !document.getElementById("signed-out").hidden`) {
		t.Error("signed-out view not shown")
	}

	// Sign-up goes to /api/users and follows the 307.
	before := len(app.Requests())
	act("signed-in:jake",
		chromedp.SetValue(chromedp.ID("reg-username"), "jake"),
		chromedp.SetValue(chromedp.ID("reg-email"), "jake@example.test"),
		chromedp.SetValue(chromedp.ID("reg-password"), "jake-password"),
		chromedp.Click(chromedp.ID("register")))
	var paths []string
	for _, r := range app.Requests()[before:] {
		paths = append(paths, r.Method+" "+r.Path)
	}
	if len(paths) < 2 || paths[0] != "POST /api/users" || paths[1] != "POST /api/users/" {
		t.Errorf("sign-up requests %q, want POST /api/users then POST /api/users/", paths)
	}
	token := evalJS[string](t, ctx, `localStorage.getItem("jwtToken")`)
	if !strings.HasPrefix(token, "eyJ") || evalJS[string](t, ctx, `document.getElementById("who").textContent`) != "jake" {
		t.Fatalf("after sign-up: jwtToken %q, #who %q", token, evalJS[string](t, ctx, `document.getElementById("who").textContent`))
	}
	if r := last(); r.Path != "/api/articles" || r.UserID == 0 {
		t.Errorf("list after sign-up %+v, want it with the token", r)
	}

	act("published:Dragons",
		chromedp.SetValue(chromedp.ID("title"), "Dragons"),
		chromedp.SetValue(chromedp.ID("body"), "How to train them"),
		chromedp.Click(chromedp.ID("publish")))
	if got := evalJS[string](t, ctx, `document.querySelector("#articles li").textContent`); got != "Dragons" {
		t.Errorf("first article %q after publishing", got)
	}

	act("saved",
		chromedp.SetValue(chromedp.ID("bio"), "trainer"),
		chromedp.Click(chromedp.ID("save-bio")))
	fresh := evalJS[string](t, ctx, `localStorage.getItem("jwtToken")`)
	if fresh == token || !strings.HasPrefix(fresh, "eyJ") {
		t.Errorf("jwtToken after settings %q, want the fresh token", fresh)
	}

	// On load the page asks GET /api/user with the stored token.
	act("signed-in:jake", chromedp.Reload())
	if got := evalJS[string](t, ctx, `document.getElementById("bio").value`); got != "trainer" {
		t.Errorf("#bio %q after reload", got)
	}

	// Logout touches only localStorage; the token still works.
	act("signed-out", chromedp.Click(chromedp.ID("logout")))
	if !evalJS[bool](t, ctx, `localStorage.getItem("jwtToken") === null`) {
		t.Error("jwtToken still stored after logout")
	}
	if r := last(); r.Method != "GET" || r.Path != "/api/articles" || r.Authorization {
		t.Errorf("last request after logout %+v, want GET /api/articles without Authorization", r)
	}
	e.want(e.do("GET", "/api/user", fresh, nil), http.StatusOK, "the token after a storage-only logout")

	act("error:422",
		chromedp.SetValue(chromedp.ID("email"), "jake@example.test"),
		chromedp.SetValue(chromedp.ID("password"), "wrong"),
		chromedp.Click(chromedp.ID("login")))
	act("signed-in:jake",
		chromedp.SetValue(chromedp.ID("password"), "jake-password"),
		chromedp.Click(chromedp.ID("login")))

	// The API's errors show as error:<status>.
	evalJS[any](t, ctx, `localStorage.setItem("jwtToken", "placeholder")`)
	act("error:401",
		chromedp.SetValue(chromedp.ID("title"), "Nope"),
		chromedp.SetValue(chromedp.ID("body"), "nope"),
		chromedp.Click(chromedp.ID("publish")))
	// A stored token the API refuses is forgotten on load.
	act("signed-out", chromedp.Reload())
	if !evalJS[bool](t, ctx, `localStorage.getItem("jwtToken") === null`) {
		t.Error("a refused token is still stored after reload")
	}

	time.Sleep(200 * time.Millisecond) // reports are sent asynchronously
	if n := violations.Load(); n != 0 {
		t.Errorf("%d CSP violation reports", n)
	}
	if !evalJS[bool](t, ctx, `getComputedStyle(document.querySelector("h1")).color === "rgb(92, 184, 92)"`) {
		t.Error("app.css did not apply")
	}
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, browsertest.Timeout)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

func waitStatus(t *testing.T, ctx context.Context, status string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, browsertest.Timeout)
	defer cancel()
	q, _ := json.Marshal(status)
	expr := `document.getElementById("status").textContent === ` + string(q)
	_, err := chromedp.Run(tctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status").textContent`))
		t.Fatalf("waiting for status %s: %v (status %s)", strconv.Quote(status), err, strconv.Quote(got))
	}
}
