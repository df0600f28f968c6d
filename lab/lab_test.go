package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/lab/attacker"
	"github.com/cloakroom/cloakroom/lab/guestbook"
)

// waitTimeout bounds every wait; the tests poll, they never sleep.
const waitTimeout = 10 * time.Second

func startLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	l, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// TestAttackChain replays the attack in headless Chromium: (1) a guest
// stores the payload in a comment, (2) the admin signs in, (3) the server
// issues the credential, (4) the admin opens the page, (5) the payload is
// served, (6) it runs and sends what it can reach to the attacker, and (7)
// the attacker tries to act as the admin, also after the admin signed out.
func TestAttackChain(t *testing.T) {
	l := startLab(t, Options{})
	// The cloakroom app over HTTPS, for the copied cookie store: Chromium
	// trusts its certificate by its pin.
	secure := startLab(t, Options{HTTPS: true})
	// The same with device binding, a bound cookie of 10 s.
	bound := startLab(t, Options{DBSC: true, BoundCookieLifetime: boundLifetime})
	browser := browsertest.NewWith(t, browsertest.Options{TrustSPKIPins: []string{secure.SPKIPin, bound.SPKIPin}, DBSC: true})
	// The attacker's own browser: they sign up as a guest to post the
	// comment, and read their collector.
	evil := newPerson(t, browser)
	t.Run("jwt", func(t *testing.T) { testJWTMode(t, browser, evil, l) })
	t.Run("cloakroom", func(t *testing.T) { testCloakroomMode(t, browser, evil, l) })
	t.Run("vault", func(t *testing.T) { testVaultMode(t, browser, evil, l) })
	t.Run("cloakroom with CSP", func(t *testing.T) { testCSP(t, browser, evil, startLab(t, Options{CSP: true})) })
	t.Run("infostealer", func(t *testing.T) { testCopiedCookieStore(t, browser, secure) })
	t.Run("dbsc", func(t *testing.T) { testCopiedBoundCookieStore(t, browser, bound) })
}

// boundLifetime is the bound cookie's lifetime in the DBSC lab: the
// shortest allowed, so the test waits for it to pass.
const boundLifetime = 10 * time.Second

// testCopiedBoundCookieStore: the same copy of the cookie store, taken
// from a browser that bound its session to a device key. The copy works
// while the bound cookie in it lives, and is refused once that cookie has
// expired; the admin's browser, which renews its own with the key, goes
// on.
func testCopiedBoundCookieStore(t *testing.T, browser context.Context, l *Lab) {
	admin := newPerson(t, browser)
	events := browsertest.WatchDBSC(t, admin)
	signIn(t, admin, l.CloakroomURL, l.Admin)
	events.Wait(t, admin, "Chromium binds the admin's session", func(d *browsertest.DBSCLog) bool { return d.Registered() == 1 || d.Failed() > 0 })
	if events.Registered() != 1 {
		t.Fatalf("Chromium did not bind the session: %s", events)
	}
	cookies := browsertest.Cookies(t, admin)
	var copied *network.Cookie
	for _, c := range cookies {
		if c.Name == "__Host-bound" {
			copied = c
		}
	}
	if copied == nil {
		t.Fatalf("no bound cookie in the browser's store")
	}
	thief := l.Client(browsertest.CopyJar(t, cookies))
	adminUsers := l.CloakroomURL + "/api/admin/users"
	if code := clientRequest(t, thief, "GET", adminUsers); code != http.StatusOK {
		t.Fatalf("the copied cookie store while its bound cookie lives: got %d, want 200", code)
	}

	// The admin goes on using the page past two lifetimes of the copied
	// bound cookie; the thief's copy dies with the first.
	expired := time.Unix(0, int64(copied.Expires*float64(time.Second))).Add(time.Second)
	for round := 1; round <= 2; round++ {
		waitUntil(t, admin, expired.Add(time.Duration(round-1)*boundLifetime))
		if got := evalAwait[float64](t, admin, `fetch("/api/admin/users").then(r => r.status)`); got != http.StatusOK {
			t.Fatalf("round %d: the admin's page got %v; events: %s", round, got, events)
		}
	}
	if code := clientRequest(t, thief, "GET", adminUsers); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie store after its bound cookie expired: got %d, want 401", code)
	}
	if events.Refreshed() < 2 {
		t.Errorf("the browser renewed its bound cookie %d times, want at least 2; events: %s", events.Refreshed(), events)
	}
	signOut(t, admin)
}

// waitUntil waits until the wall clock reaches when: the state waited
// for is a cookie's expiry, on the clock the browser and the lab share.
func waitUntil(t *testing.T, ctx context.Context, when time.Time) {
	t.Helper()
	if d := time.Until(when); d > 3*boundLifetime {
		t.Fatalf("waiting %v for a cookie of %v", d, boundLifetime)
	}
	select {
	case <-time.After(time.Until(when)):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// testCopiedCookieStore: malware on the admin's machine copies the
// browser's whole cookie store, HttpOnly cookies included, and replays it
// from the attacker's own program. Without device binding the copy is as
// good as the browser until the admin signs out.
func testCopiedCookieStore(t *testing.T, browser context.Context, l *Lab) {
	admin := newPerson(t, browser)
	signIn(t, admin, l.CloakroomURL, l.Admin)
	cookies := browsertest.Cookies(t, admin)
	if !slices.ContainsFunc(cookies, func(c *network.Cookie) bool { return c.Name == l.SessionCookie && c.HTTPOnly }) {
		t.Fatalf("the copied store lacks the HttpOnly session cookie: %d cookies", len(cookies))
	}
	thief := l.Client(browsertest.CopyJar(t, cookies))
	if code := clientRequest(t, thief, "GET", l.CloakroomURL+"/api/admin/users"); code != http.StatusOK {
		t.Fatalf("the copied cookie store from another machine: got %d, want 200", code)
	}
	signOut(t, admin)
	if code := clientRequest(t, thief, "GET", l.CloakroomURL+"/api/admin/users"); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie store after the admin signed out: got %d, want 401", code)
	}
}

// clientRequest sends a request with client, as a JSON API call, and
// returns the status.
func clientRequest(t *testing.T, client *http.Client, method, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

func testJWTMode(t *testing.T, browser, guest context.Context, l *Lab) {
	// (1) The attacker, signed in as a guest, stores the payload.
	signIn(t, guest, l.JWTURL, l.Guest)
	postComment(t, guest, l.Comment)

	// (2)-(6) The admin signs in and the page shows the comment.
	admin := newPerson(t, browser)
	signIn(t, admin, l.JWTURL, l.Admin)
	loot := waitForLoot(t, l, "jwt", AdminUser)
	token := eval[string](t, admin, `localStorage.getItem("guestbook.token")`)
	if !strings.HasPrefix(token, "eyJ") {
		t.Fatalf("admin's token in localStorage = %q", token)
	}
	if got := loot.Report.LocalStorage["guestbook.token"]; got != token {
		t.Fatalf("the collector received %q, want the admin's token", got)
	}
	if !slices.Contains(attacker.Candidates(loot.Body), token) {
		t.Error("the attacker's candidate list misses the token")
	}
	if got := loot.Report.AdminCall.Status; got != http.StatusOK {
		t.Errorf("payload's admin call from the page: got %d, want 200", got)
	}

	// Forged cross-site requests carry no bearer token: 401, nothing deleted.
	checkForgeries(t, admin, l, "jwt", l.jwtLog, l.jwtApp, http.StatusUnauthorized)

	// (7) The attacker's own HTTP client acts as the admin.
	stolen := http.Header{"Authorization": {"Bearer " + token}}
	if code := plainRequest(t, "GET", l.JWTURL+"/api/admin/users", stolen); code != http.StatusOK {
		t.Errorf("stolen token, admin API: got %d, want 200", code)
	}
	if code := plainRequest(t, "POST", l.JWTURL+"/api/comments/1/delete", stolen); code != http.StatusOK {
		t.Errorf("stolen token, admin delete: got %d, want 200", code)
	}

	// The admin signs out; the token leaves localStorage only.
	signOut(t, admin)
	if got := eval[bool](t, admin, `localStorage.getItem("guestbook.token") === null`); !got {
		t.Error("token still in localStorage after sign-out")
	}
	if code := plainRequest(t, "GET", l.JWTURL+"/api/admin/users", stolen); code != http.StatusOK {
		t.Errorf("stolen token after the admin signed out: got %d, want 200 (the flaw the lab shows)", code)
	}

	collectorScreenshot(t, guest, l, "jwt", "lab-jwt.png", "STOLEN CREDENTIAL STILL WORKS")
}

func testCloakroomMode(t *testing.T, browser, guest context.Context, l *Lab) {
	// (1) The attacker, signed in as a guest, stores the payload.
	signIn(t, guest, l.CloakroomURL, l.Guest)
	postComment(t, guest, l.Comment)

	// Before the admin signs in, script on the app's origin cannot plant a
	// session cookie (fixation): the __Host-Http- prefix forbids script
	// from creating it, while an ordinary cookie goes through.
	admin := newPerson(t, browser)
	run(t, admin, chromedp.Navigate(l.CloakroomURL+"/"))
	waitFor(t, admin, `document.body.dataset.state === "login"`)
	planted := eval[string](t, admin, `document.cookie = "`+l.SessionCookie+`=planted-by-script; Path=/; Secure"; `+
		`document.cookie = "lab-control=1; Path=/"; document.cookie`)
	if planted != "lab-control=1" || sessionCookie(t, admin, l) != nil {
		t.Errorf("after planting, document.cookie = %q and the cookie store holds %+v; want only the control cookie", planted, sessionCookie(t, admin, l))
	}
	eval[string](t, admin, `document.cookie = "lab-control=; Max-Age=0; Path=/"; document.cookie`)

	// (2)-(6) The admin signs in and the page shows the comment.
	signIn(t, admin, l.CloakroomURL, l.Admin)
	loot := waitForLoot(t, l, "cloakroom", AdminUser)
	rep := loot.Report

	// The session cookie, read from the browser's cookie store as malware
	// on the machine would.
	cookie := sessionCookie(t, admin, l)
	if cookie == nil {
		t.Fatal("no session cookie in the browser")
	}
	if !cookie.HTTPOnly || !cookie.Secure || cookie.SameSite != network.CookieSameSiteLax || cookie.Path != "/" || cookie.Domain != "localhost" {
		t.Errorf("session cookie attributes: %+v", cookie)
	}

	// Step 6 finds nothing to take.
	if len(rep.LocalStorage) != 0 || len(rep.SessionStorage) != 0 || rep.Cookie != "" {
		t.Errorf("payload found web storage %v %v or cookies %q", rep.LocalStorage, rep.SessionStorage, rep.Cookie)
	}
	for _, lt := range l.attacker.Loot() {
		if bytes.Contains(lt.Body, []byte(cookie.Value)) {
			t.Fatalf("the session cookie's value reached the collector in report #%d", lt.ID)
		}
	}
	// The honest limit: the payload acts through the open page.
	if rep.AdminCall == nil || rep.AdminCall.Status != http.StatusOK {
		t.Errorf("payload's same-origin admin call: got %+v, want 200", rep.AdminCall)
	}

	// (7) Whatever was stolen is refused from anywhere else.
	stolen := stolenStrings(loot)
	if len(stolen) < 3 {
		t.Fatalf("only %d strings collected: %q", len(stolen), stolen)
	}
	for _, s := range stolen {
		for name, h := range map[string]http.Header{
			"as the session cookie": {"Cookie": {l.SessionCookie + "=" + s}},
			"as a bearer token":     {"Authorization": {"Bearer " + s}},
			"as the CSRF token":     {"X-CSRF-Token": {s}},
		} {
			if code := plainRequest(t, "GET", l.CloakroomURL+"/api/admin/users", h); code != http.StatusUnauthorized {
				t.Errorf("replaying %q %s: got %d, want 401", s, name, code)
			}
		}
		if code := plainRequest(t, "POST", l.CloakroomURL+"/api/comments/1/delete", http.Header{"X-CSRF-Token": {s}}); code != http.StatusUnauthorized {
			t.Errorf("replaying %q as the CSRF token on the admin action: got %d, want 401", s, code)
		}
	}

	// The copy of the cookie is the real credential while the session lives.
	withCookie := http.Header{"Cookie": {l.SessionCookie + "=" + cookie.Value}}
	if code := plainRequest(t, "GET", l.CloakroomURL+"/api/admin/users", withCookie); code != http.StatusOK {
		t.Fatalf("the cookie copied from the browser, before sign-out: got %d, want 200", code)
	}

	// Forged cross-site requests: refused before the app, nothing deleted.
	checkForgeries(t, admin, l, "cloakroom", l.cloakroomLog, l.cloakroomApp, http.StatusForbidden)

	// Signing out ends the session on the server: the copy dies with it.
	signOut(t, admin)
	if code := plainRequest(t, "GET", l.CloakroomURL+"/api/admin/users", withCookie); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie after sign-out: got %d, want 401", code)
	}
	if c := sessionCookie(t, admin, l); c != nil {
		t.Errorf("the browser still holds a session cookie after sign-out: %+v", c)
	}

	collectorScreenshot(t, guest, l, "cloakroom", "lab-cloakroom.png", "Nothing stolen works from here")
}

func testCSP(t *testing.T, browser, guest context.Context, l *Lab) {
	res, err := http.Get(l.CloakroomURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Get("Content-Security-Policy"); got != CSP {
		t.Fatalf("page CSP = %q, want %q", got, CSP)
	}
	signIn(t, guest, l.CloakroomURL, l.Guest)
	postComment(t, guest, l.Comment)
	admin := newPerson(t, browser)
	signIn(t, admin, l.CloakroomURL, l.Admin)
	// The browser reports the blocked inline handler; the payload's only
	// way in was that handler, so once it is blocked nothing else comes.
	waitFor(t, admin, `Number(document.body.dataset.cspViolations || 0) >= 1`)
	if n := eval[int](t, admin, `document.querySelectorAll("#comments li").length`); n != 2 {
		t.Errorf("admin sees %d comments, want 2", n)
	}
	if loot := l.attacker.Loot(); len(loot) != 0 {
		t.Errorf("with CSP on, the collector received %d reports", len(loot))
	}
	for _, r := range l.attackerLog.snapshot() {
		if r.Path == "/payload.js" || r.Path == "/collect" {
			t.Errorf("with CSP on, the attacker saw %s %s", r.Method, r.Path)
		}
	}
	// The page itself still works under the policy.
	run(t, admin, chromedp.Click(chromedp.ID("load-users")))
	waitFor(t, admin, `!document.getElementById("users").hidden && document.querySelectorAll("#users tbody tr").length === 2`)
}

// checkForgeries opens the attacker's forgery page in a tab of the
// victim's browser and checks that both forged requests were answered with
// want and that the comment survived.
func checkForgeries(t *testing.T, victim context.Context, l *Lab, target string, log *requestLog, app *guestbook.App, want int) {
	t.Helper()
	tab := newTab(t, victim)
	run(t, tab, chromedp.Navigate(l.AttackerURL+"/csrf?target="+target+"&comment=1"))
	waitFor(t, tab, `document.body.dataset.done === "1"`)
	var forged []loggedRequest
	deadline := time.Now().Add(waitTimeout)
	for len(forged) < 2 && time.Now().Before(deadline) {
		forged = forged[:0]
		for _, r := range log.snapshot() {
			if r.Method == "POST" && r.Path == "/api/comments/1/delete" && r.SecFetchSite == "cross-site" {
				forged = append(forged, r)
			}
		}
		if len(forged) < 2 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(forged) != 2 {
		t.Fatalf("%s app saw %d forged requests, want 2 (form and fetch): %+v", target, len(forged), forged)
	}
	for _, r := range forged {
		if r.Status != want || (r.Origin != l.AttackerURL && r.Origin != "null") {
			t.Errorf("forged request from %q answered %d, want %d", r.Origin, r.Status, want)
		}
	}
	if !slices.ContainsFunc(app.Comments(), func(c guestbook.Comment) bool { return c.ID == 1 }) {
		t.Error("the forged admin action deleted comment #1")
	}
}

// --- the browser side ---------------------------------------------------

// newPerson returns a tab in a new browser context: its own cookies and
// storage, like a different person's browser.
func newPerson(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// newTab returns another tab of the same browser context as person.
func newTab(t *testing.T, person context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(person)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatal(err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// evalAwait is eval for an expression whose value is a promise.
func evalAwait[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor polls the page until expr is true.
func waitFor(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, waitTimeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(tctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		status, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status") ? document.getElementById("status").textContent : ""`))
		t.Fatalf("waiting for %s: %v (page status %q)", expr, err, status)
	}
}

func signIn(t *testing.T, ctx context.Context, appURL string, c Credentials) {
	t.Helper()
	run(t, ctx, chromedp.Navigate(appURL+"/"))
	waitFor(t, ctx, `document.body.dataset.state === "login"`)
	run(t, ctx,
		chromedp.SetValue(chromedp.ID("username"), c.Name),
		chromedp.SetValue(chromedp.ID("password"), c.Password),
		chromedp.Click(chromedp.ID("login-button")),
	)
	waitFor(t, ctx, `document.body.dataset.state === "app"`)
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, chromedp.Click(chromedp.ID("logout")))
	waitFor(t, ctx, `document.body.dataset.state === "login"`)
}

func postComment(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	before := eval[int](t, ctx, `Number(document.body.dataset.comments)`)
	run(t, ctx,
		chromedp.SetValue(chromedp.ID("comment-text"), text),
		chromedp.Click(chromedp.ID("comment-button")),
	)
	waitFor(t, ctx, `Number(document.body.dataset.comments) === `+jsonString(before+1))
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

// sessionCookie reads the cloakroom app's session cookie from the
// browser's cookie store, or nil.
func sessionCookie(t *testing.T, ctx context.Context, l *Lab) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{l.CloakroomURL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == l.SessionCookie {
			return c
		}
	}
	return nil
}

// collectorScreenshot opens the attacker's collector, showing the reports
// from target's pages, in the attacker's own browser, checks that it says
// want, and saves a screenshot of it as docs/img/name when
// CLOAKROOM_SCREENSHOTS=1 or when the file is missing.
func collectorScreenshot(t *testing.T, attackerTab context.Context, l *Lab, target, name, want string) {
	t.Helper()
	run(t, attackerTab, chromedp.Navigate(l.AttackerURL+"/?target="+target))
	waitFor(t, attackerTab, `document.body.innerText.includes(`+jsonString(want)+`)`)
	tctx, cancel := context.WithTimeout(attackerTab, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG")
	}
	path := filepath.Join("..", "docs", "img", name)
	if _, err := os.Stat(path); err == nil && os.Getenv("CLOAKROOM_SCREENSHOTS") != "1" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// --- the attacker's side ------------------------------------------------

// waitForLoot polls the collector for the payload's report from victim's
// page on the target app.
func waitForLoot(t *testing.T, l *Lab, target, victim string) attacker.Loot {
	t.Helper()
	origin := l.JWTURL
	switch target {
	case "cloakroom":
		origin = l.CloakroomURL
	case "vault":
		origin = l.VaultURL
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		for _, lt := range l.attacker.Loot() {
			if lt.Report != nil && lt.Report.Victim() == victim && strings.HasPrefix(lt.Report.Page, origin+"/") {
				return lt
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report from %s's page on the %s app reached the collector", victim, target)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stolenStrings returns every string in a report that an attacker could
// try: the token-like candidates and every JSON string, also inside the
// response bodies the payload captured, that can go into a header.
func stolenStrings(l attacker.Loot) []string {
	found := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			found[v] = true
			var inner any
			if json.Unmarshal([]byte(v), &inner) == nil {
				walk(inner)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var v any
	if json.Unmarshal(l.Body, &v) == nil {
		walk(v)
	}
	for _, c := range attacker.Candidates(l.Body) {
		found[c] = true
	}
	out := make([]string, 0, len(found))
	for s := range found {
		if len(s) >= 4 && len(s) <= 4096 && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// plainRequest sends a request from a plain Go client, as an attacker
// would from their own machine, and returns the status code.
func plainRequest(t *testing.T, method, url string, h http.Header) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// --- without a browser --------------------------------------------------

func TestStartRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:80"} {
		l, err := Start(t.Context(), Options{AttackerAddr: addr})
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%s: got %v, want ErrNotLoopback", addr, err)
		}
		if l != nil {
			l.Close()
		}
	}
}

// TestCloakroomOverHTTP drives the cloakroom app with a plain client, on
// the SQLite store, and checks that neither the store's files nor the logs
// ever hold a session token.
func TestCloakroomOverHTTP(t *testing.T) {
	var logs syncBuffer
	l := startLab(t, Options{SQLite: true, AdminPassword: "correct horse battery",
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if l.Admin.Password != "correct horse battery" || len(l.Guest.Password) != 14 {
		t.Errorf("credentials %+v %+v", l.Admin, l.Guest)
	}
	// `cloakroom demo` serves its notes app on localhost with the default
	// cookie name; browsers share cookies across ports, so the lab's apps
	// must use their own names or logging in to one logs out the other.
	if l.SessionCookie == cloakroom.DefaultCookieName || l.SessionCookie == VaultSessionCookie {
		t.Errorf("the lab's session cookie %q clashes with the demo's or the vault app's", l.SessionCookie)
	}
	for _, want := range []string{l.JWTURL, l.CloakroomURL, l.AttackerURL, l.Guest.Password, l.Comment, "DELIBERATELY VULNERABLE"} {
		if !strings.Contains(l.Instructions(), want) {
			t.Errorf("Instructions() lacks %q", want)
		}
	}
	for _, u := range []string{l.JWTURL, l.CloakroomURL, l.AttackerURL} {
		res, err := http.Get(u + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`class="banner"`)) {
			t.Errorf("%s/: %d, no lab banner", u, res.StatusCode)
		}
	}

	// Sign in as a script would; the answer sets the cookie only.
	body := strings.NewReader(`{"username":"admin","password":"correct horse battery"}`)
	res, err := http.Post(l.CloakroomURL+"/auth/login", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == l.SessionCookie {
			cookie = c
		}
	}
	if res.StatusCode != http.StatusOK || cookie == nil || !cookie.HttpOnly || !cookie.Secure {
		t.Fatalf("login: %d %+v", res.StatusCode, cookie)
	}
	if bytes.Contains(b, []byte(cookie.Value)) {
		t.Error("the login response body contains the session token")
	}
	var login struct {
		CSRFToken string `json:"csrf_token"`
	}
	json.Unmarshal(b, &login)
	withCookie := http.Header{"Cookie": {l.SessionCookie + "=" + cookie.Value}}
	if code := plainRequest(t, "GET", l.CloakroomURL+"/api/admin/users", withCookie); code != http.StatusOK {
		t.Errorf("admin API with the cookie: %d", code)
	}
	// A client without Origin or Sec-Fetch-Site needs the CSRF token.
	if code := plainRequest(t, "POST", l.CloakroomURL+"/api/comments/1/delete", withCookie); code != http.StatusForbidden {
		t.Errorf("admin action without the CSRF token: got %d, want 403", code)
	}
	withToken := withCookie.Clone()
	withToken.Set("X-CSRF-Token", login.CSRFToken)
	if code := plainRequest(t, "POST", l.CloakroomURL+"/api/comments/1/delete", withToken); code != http.StatusOK {
		t.Errorf("admin action with the CSRF token: got %d, want 200", code)
	}

	// The upstream API does not believe identity headers on their own.
	spoofed := http.Header{guestbook.HeaderUser: {"admin"}, guestbook.HeaderGroups: {"admin"}}
	if code := plainRequest(t, "GET", l.apiURL+"/api/admin/users", spoofed); code != http.StatusUnauthorized {
		t.Errorf("upstream reached directly with spoofed headers: got %d, want 401", code)
	}

	if code := plainRequest(t, "POST", l.CloakroomURL+"/auth/logout", withToken); code != http.StatusNoContent {
		t.Errorf("logout: got %d, want 204", code)
	}
	if code := plainRequest(t, "GET", l.CloakroomURL+"/api/admin/users", withCookie); code != http.StatusUnauthorized {
		t.Errorf("cookie after logout: got %d, want 401", code)
	}

	// A stolen copy of the store or of the logs yields no token.
	files, err := os.ReadDir(l.dbDir)
	if err != nil || len(files) == 0 {
		t.Fatalf("SQLite folder: %v, %d files", err, len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(l.dbDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(cookie.Value)) || bytes.Contains(b, []byte(login.CSRFToken)) {
			t.Errorf("%s holds the session token or the CSRF token", f.Name())
		}
	}
	text := logs.String()
	for _, want := range []string{`"msg":"login"`, `"msg":"logout"`, `"user":"admin"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
	if strings.Contains(text, cookie.Value) || strings.Contains(text, login.CSRFToken) {
		t.Error("the logs hold the session token or the CSRF token")
	}
}

// syncBuffer collects output from concurrent goroutines.
type syncBuffer = syncbuf.Buffer
