package gateway_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
)

// nav is what a browser's top-level form post or page load sends.
var nav = []string{"Sec-Fetch-Mode", "navigate", "Accept", "text/html"}

// isStyledPage reports whether r is a built-in page in the layout, with
// the way back to the application.
func isStyledPage(r response) bool {
	return strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") &&
		strings.Contains(r.Text, `href="/auth/assets/style.css"`) &&
		strings.Contains(r.Text, `id="back-to-app"`)
}

// errorIn returns the text of the error paragraph inside the part of the
// page that starts at marker and ends at the next end tag named end.
func errorIn(page, marker, end string) string {
	i := strings.Index(page, marker)
	if i < 0 {
		return ""
	}
	part := page[i:]
	if j := strings.Index(part, end); j >= 0 {
		part = part[:j]
	}
	m := regexp.MustCompile(`<p class="error[^"]*" role="alert" id="error">([^<]*)</p>`).FindStringSubmatch(part)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestAccountFormErrorsOnThePage: every refused account form comes back
// as the account page in the layout, with its status, the message next to
// the form it concerns and a fresh form to try again; scripts posting the
// same failures to the JSON endpoints keep getting JSON.
func TestAccountFormErrorsOnThePage(t *testing.T) {
	e := newEnv(t)
	b, other := e.minted("alice"), e.minted("alice")
	otherHandle := handleOf(t, e, other)
	csrf := b.csrf()

	r := b.postForm("/auth/account/password", url.Values{"csrf_token": {csrf}, "current_password": {"wrong password!"}, "new_password": {"a brand new passphrase"}}, nav...)
	if r.Status != http.StatusUnauthorized || !isStyledPage(r) {
		t.Fatalf("wrong current password: %d, styled %v: %s", r.Status, isStyledPage(r), r.Text)
	}
	if got := errorIn(r.Text, `id="password"`, "</form>"); got != "The current password is wrong." {
		t.Errorf("wrong current password: message by the password form %q", got)
	}
	if !strings.Contains(r.Text, `id="password-form"`) || !strings.Contains(r.Text, `id="devices"`) {
		t.Error("the page after a refused password change is not the account page")
	}

	r = b.postForm("/auth/account/password", url.Values{"csrf_token": {csrf}, "current_password": {password}, "new_password": {"short"}}, nav...)
	if r.Status != http.StatusBadRequest || !isStyledPage(r) || errorIn(r.Text, `id="password"`, "</form>") == "" {
		t.Errorf("too short a new password: %d, styled %v, message %q", r.Status, isStyledPage(r), errorIn(r.Text, `id="password"`, "</form>"))
	}

	// An expired form: the page comes back with a fresh token.
	r = b.postForm("/auth/account/revoke-all", url.Values{"csrf_token": {"stale"}}, nav...)
	if r.Status != http.StatusForbidden || !isStyledPage(r) {
		t.Fatalf("expired form: %d %s", r.Status, r.Text)
	}
	if got := errorIn(r.Text, `id="revoke-all"`, "</section>"); !strings.Contains(got, "expired") {
		t.Errorf("expired form: message %q", got)
	}
	if !strings.Contains(r.Text, `name="csrf_token" value="`+b.csrf()+`"`) {
		t.Error("the page after an expired form lacks the current token")
	}

	// Step-up: the sign-in is old, and no password was typed.
	e.clock.Advance(6 * time.Minute)
	csrf = b.csrf()
	r = b.postForm("/auth/account/revoke", url.Values{"csrf_token": {csrf}, "handle": {otherHandle}}, nav...)
	if r.Status != http.StatusForbidden || !isStyledPage(r) {
		t.Fatalf("stale revoke of one device: %d %s", r.Status, r.Text)
	}
	got := errorIn(r.Text, `id="device-`+otherHandle+`"`, "</tr>")
	if !strings.Contains(got, "log out that device") || strings.Contains(got, "other devices") {
		t.Errorf("stale revoke of one device: message in its row %q", got)
	}
	r = b.postForm("/auth/account/revoke-others", url.Values{"csrf_token": {csrf}}, nav...)
	if got := errorIn(r.Text, `id="revoke-others"`, "</section>"); r.Status != http.StatusForbidden || !strings.Contains(got, "log out your other devices") {
		t.Errorf("stale revoke-others: %d, message %q", r.Status, got)
	}
	// A handle that is not the user's is never reflected.
	r = b.postForm("/auth/account/revoke", url.Values{"csrf_token": {csrf}, "handle": {"AAAAAAAAAAAAAAAAAAAAAA"}}, nav...)
	if strings.Contains(r.Text, "AAAAAAAAAAAAAAAAAAAAAA") {
		t.Error("an unknown handle was reflected into the page")
	}
	if !other.loggedIn() {
		t.Fatal("a refused form ended a session")
	}

	// Scripts get JSON for the same failures.
	r = b.postJSON("/auth/password", map[string]any{"current_password": "wrong password!", "new_password": "a brand new passphrase"}, cloakroom.CSRFHeader, b.csrf())
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "invalid_credentials" {
		t.Errorf("JSON password change: %d %s", r.Status, r.Text)
	}
}

// TestErrorPageHasAWayBack: an error that concerns no form of the account
// page (a logout form that expired) is the styled error page with links to
// the application and the account page, the user still shown signed in.
func TestErrorPageHasAWayBack(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	r := b.postForm("/auth/logout", url.Values{"csrf_token": {"stale"}}, nav...)
	if r.Status != http.StatusForbidden || !isStyledPage(r) {
		t.Fatalf("expired logout form: %d %s", r.Status, r.Text)
	}
	for _, want := range []string{`<h1>Not allowed</h1>`, `href="/auth/account" id="back-to-account"`, `id="whoami">alice<`, "This form has expired"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("error page lacks %q", want)
		}
	}
	if r.Header.Get("Content-Security-Policy") == "" || r.Header.Get("Cache-Control") != "no-store" {
		t.Error("the error page lacks the pages' security headers")
	}
}

// TestUnknownAuthPath: an unknown path under the auth prefix is a styled
// 404 page for a navigation and JSON for a script.
func TestUnknownAuthPath(t *testing.T) {
	e := newEnv(t)
	r := e.browser().get("/auth/nope", nav...)
	if r.Status != http.StatusNotFound || !isStyledPage(r) || !strings.Contains(r.Text, "<h1>Page not found</h1>") {
		t.Errorf("navigation: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Text)
	}
	r = e.browser().get("/auth/nope")
	if r.Status != http.StatusNotFound || r.json(t)["error"] != "not_found" {
		t.Errorf("script: %d %s", r.Status, r.Text)
	}
}

// TestAccountPageLinksToApp: the account page leads back to the
// application.
func TestAccountPageLinksToApp(t *testing.T) {
	e := newEnv(t)
	r := e.minted("alice").get("/auth/account", nav...)
	if !strings.Contains(r.Text, `<a href="/" id="back-to-app">`) || !strings.Contains(r.Text, `<a href="/" id="app-link"`) {
		t.Errorf("the account page has no link back to the application: %s", r.Text)
	}
}

// TestSignedOutNotices: the login page says why the user was signed out,
// from the hint in the link that led there (only fixed messages, nothing
// reflected), and still comes back to the page the user was on.
func TestSignedOutNotices(t *testing.T) {
	e := newEnv(t)
	notice := func(r response) string {
		m := regexp.MustCompile(`<p class="notice" role="status" id="notice">([^<]*)</p>`).FindStringSubmatch(r.Text)
		if m == nil {
			return ""
		}
		return m[1]
	}

	b := e.minted("alice")
	r := b.postForm("/auth/logout", url.Values{"csrf_token": {b.csrf()}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/login?ended=logout" {
		t.Fatalf("logout form: %d, Location %q", r.Status, r.Header.Get("Location"))
	}
	if got := notice(b.get(r.Header.Get("Location"), nav...)); got != "You signed out. Sign in again to continue." {
		t.Errorf("after logout: notice %q", got)
	}

	b = e.minted("alice")
	r = b.postForm("/auth/account/revoke-all", url.Values{"csrf_token": {b.csrf()}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/login?ended=everywhere" {
		t.Fatalf("log out everywhere: %d, Location %q", r.Status, r.Header.Get("Location"))
	}
	if got := notice(b.get(r.Header.Get("Location"), nav...)); !strings.Contains(got, "all your devices") {
		t.Errorf("after log out everywhere: notice %q", got)
	}

	// Signed out from another device: the next navigation keeps where the
	// user was, and says what happened.
	phone, laptop := e.minted("alice"), e.minted("alice")
	if r := laptop.do(http.MethodDelete, "/auth/sessions/"+handleOf(t, e, phone), "", "", cloakroom.CSRFHeader, laptop.csrf()); r.Status != http.StatusNoContent {
		t.Fatalf("revoke the phone: %d %s", r.Status, r.Text)
	}
	r = phone.get("/app/notes?x=1", nav...)
	if want := "/auth/login?return_to=%2Fapp%2Fnotes%3Fx%3D1&ended=session"; r.Status != http.StatusSeeOther || r.Header.Get("Location") != want {
		t.Fatalf("navigation after being signed out: %d, Location %q, want %q", r.Status, r.Header.Get("Location"), want)
	}
	page := e.browser().get(r.Header.Get("Location"), nav...)
	if got := notice(page); !strings.Contains(got, "signed out from another device or by an administrator") {
		t.Errorf("after being signed out elsewhere: notice %q", got)
	}
	if !strings.Contains(page.Text, `name="return_to" value="/app/notes?x=1"`) {
		t.Error("the login form does not come back to the page the user was on")
	}

	// A script's request whose session ended learns why, in JSON.
	gone := e.minted("alice")
	if r := laptop.do(http.MethodDelete, "/auth/sessions/"+handleOf(t, e, gone), "", "", cloakroom.CSRFHeader, laptop.csrf()); r.Status != http.StatusNoContent {
		t.Fatalf("revoke: %d", r.Status)
	}
	for _, path := range []string{"/api/notes", "/auth/session"} {
		b := *gone // the same cookie for each request
		body := b.get(path).json(t)
		if body["ended"] != "session" || body["login_url"] != "/auth/login?ended=session" {
			t.Errorf("%s after the session ended: %v", path, body)
		}
	}
	// Without a cookie nothing ended: no hint, and no notice.
	if body := e.browser().get("/auth/session").json(t); body["ended"] != nil || body["login_url"] != "/auth/login" {
		t.Errorf("anonymous 401: %v", body)
	}
	for _, q := range []string{"", "?ended=%3Cscript%3E", "?ended="} {
		if got := notice(e.browser().get("/auth/login"+q, nav...)); got != "" {
			t.Errorf("login page%s: notice %q", q, got)
		}
	}
	// A hint does not change what a live session sees.
	if got := notice(laptop.get("/auth/login?ended=session", nav...)); got != "" {
		t.Errorf("signed-in user sees %q", got)
	}
}

// TestFormatWait: the wait shown to a throttled user is rounded up, so
// trying again when it has passed is not refused again.
func TestFormatWait(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Millisecond:                           "1 second",
		time.Second:                                "1 second",
		1500 * time.Millisecond:                    "2 seconds",
		45 * time.Second:                           "45 seconds",
		time.Minute:                                "60 seconds",
		time.Minute + time.Millisecond:             "2 minutes",
		2*time.Minute + 5*time.Second:              "3 minutes",
		5 * time.Minute:                            "5 minutes",
		59*time.Minute + time.Second:               "1 hour",
		time.Hour:                                  "1 hour",
		time.Hour + 4*time.Minute + 30*time.Second: "1 hour 5 minutes",
		3 * time.Hour:                              "3 hours",
	} {
		if got := gateway.FormatWait(d); got != want {
			t.Errorf("FormatWait(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestThrottlePageShowsTheWait: a throttled sign-in says how long to wait,
// in the page and in the JSON message, matching Retry-After.
func TestThrottlePageShowsTheWait(t *testing.T) {
	e := newEnv(t)
	var r response
	for guesses := 0; ; guesses++ {
		if guesses == 20 {
			t.Fatal("not throttled after 20 wrong guesses")
		}
		r = e.browser().postForm("/auth/login", url.Values{"username": {"alice"}, "password": {"wrong password!"}}, nav...)
		if r.Status == http.StatusTooManyRequests {
			break
		}
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	t.Logf("Retry-After: %d", secs)
	want := "Too many attempts. Try again in " + gateway.FormatWait(time.Duration(secs)*time.Second) + "."
	if !strings.Contains(r.Text, `id="login-form"`) || !strings.Contains(r.Text, want) {
		t.Errorf("throttle page lacks %q: %s", want, r.Text)
	}
	j := e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": "wrong password!"})
	if j.Status != http.StatusTooManyRequests || j.Header.Get("Retry-After") == "" || !strings.HasPrefix(j.json(t)["message"].(string), "Too many attempts. Try again in ") {
		t.Errorf("JSON: %d %q %s", j.Status, j.Header.Get("Retry-After"), j.Text)
	}
}

// TestTooManyCookies: more cookie bytes than the session middleware reads
// get 431 naming the limit and the way out (a page for navigations, JSON
// for scripts), not a 401 or a redirect to sign in again; up to the limit
// the session works.
func TestTooManyCookies(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	// padding makes the Cookie header exactly n bytes long.
	padding := func(n int) string {
		prefix := cookieName + "=" + b.token + "; pad="
		return prefix + strings.Repeat("x", n-len(prefix))
	}
	at := padding(cloakroom.MaxCookieHeader)
	r := b.get("/auth/account", append(nav, "Cookie", at)...)
	if r.Status != http.StatusOK {
		t.Fatalf("a Cookie header of exactly the limit: %d", r.Status)
	}
	over := padding(cloakroom.MaxCookieHeader + 1)
	for _, path := range []string{"/auth/account", "/app/notes", "/auth/login"} {
		r = b.get(path, append(nav, "Cookie", over)...)
		if r.Status != http.StatusRequestHeaderFieldsTooLarge || !isStyledPage(r) {
			t.Fatalf("navigation to %s over the limit: %d %s", path, r.Status, r.Text)
		}
		for _, want := range []string{"16 KiB", "Clear this site&#39;s cookies", "<h1>Too many cookies</h1>"} {
			if !strings.Contains(r.Text, want) {
				t.Errorf("%s: the 431 page lacks %q", path, want)
			}
		}
	}
	// The pages' stylesheet needs no session: the 431 page is styled.
	if r := b.get("/auth/assets/style.css", "Cookie", over); r.Status != http.StatusOK {
		t.Errorf("stylesheet over the limit: %d", r.Status)
	}
	r = b.get("/api/notes", "Cookie", over)
	if r.Status != http.StatusRequestHeaderFieldsTooLarge || r.json(t)["error"] != "cookies_too_large" || !strings.Contains(r.json(t)["message"].(string), "16 KiB") {
		t.Errorf("script over the limit: %d %s", r.Status, r.Text)
	}
	if e.api.hits.Load() != 0 {
		t.Error("a request over the limit reached the upstream")
	}
	if !b.loggedIn() {
		t.Error("the session did not survive")
	}
}
