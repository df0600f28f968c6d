package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/signin"
)

// TestDeviceCookieKeepsUserIn: an attacker who spends alice's budget for
// unknown devices locks out unknown browsers only; the browser alice
// logged in from before still gets in, and its device cookie is a
// __Host-, HttpOnly, Strict cookie that never reaches an upstream.
func TestDeviceCookieKeepsUserIn(t *testing.T) {
	e := newEnv(t)
	alice := e.browser()
	r := alice.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r.Status != http.StatusOK {
		t.Fatalf("first login: %d %s", r.Status, r.Text)
	}
	var line string
	for _, l := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(l, signin.DeviceCookie+"=") {
			line = l
		}
	}
	c, err := http.ParseSetCookie(line)
	if err != nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.MaxAge <= 0 {
		t.Fatalf("device cookie %q (%v): want Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age", line, err)
	}
	// The device cookie is the gateway's, like the session cookie.
	if got := alice.get("/api/echo").Text; strings.Contains(got, alice.device) {
		t.Error("the device cookie reached the upstream")
	}

	attacker := e.browser()
	for range 4 { // 3 free failures, then throttled
		attacker.postJSON("/auth/login", map[string]string{"username": "alice", "password": "wrong password!"})
	}
	if r := attacker.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusTooManyRequests {
		t.Fatalf("unknown device after the attack: %d, want 429", r.Status)
	}
	if r := e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusTooManyRequests {
		t.Errorf("another unknown browser: %d, want 429", r.Status)
	}
	if r := alice.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusOK {
		t.Errorf("alice's known browser: %d %s, want 200", r.Status, r.Text)
	}
	e.clock.Advance(time.Hour)
}

// TestFailedLoginAuditHidesTypedName: a failed login's audit line carries
// a keyed hash prefix of the name typed, never the name itself (it may be
// a mistyped password); the same name gives the same prefix.
func TestFailedLoginAuditHidesTypedName(t *testing.T) {
	e := newEnv(t)
	const typed = "hunter2-my-password"
	for range 2 {
		e.browser().postJSON("/auth/login", map[string]string{"username": typed, "password": "some password"})
	}
	e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": "wrong password!"})
	if strings.Contains(e.logs.String(), typed) {
		t.Fatal("the typed name appears in the logs")
	}
	var refs []string
	for _, ev := range e.logs.events("login") {
		if ev["outcome"] == "success" {
			continue
		}
		if _, ok := ev["user"]; ok {
			t.Errorf("failed login logged user %v", ev["user"])
		}
		ref, _ := ev["user_ref"].(string)
		if len(ref) != 12 {
			t.Errorf("user_ref %q, want 12 hex digits", ref)
		}
		refs = append(refs, ref)
	}
	if len(refs) != 3 || refs[0] != refs[1] || refs[0] == refs[2] {
		t.Errorf("user_refs %q: want the same prefix for the same name, another for alice", refs)
	}
}

// TestFrontendStripsSpoofedIdentity: with a frontend upstream, client-sent
// identity and forwarding headers never reach it, whatever their case and
// with "_" for "-".
func TestFrontendStripsSpoofedIdentity(t *testing.T) {
	front := newUpstream(t)
	u, _ := url.Parse(front.srv.URL)
	e := newEnv(t, func(c *gateway.Config) { c.Static, c.Frontend = "", u })
	b := e.minted("bob")
	spoofed := []string{"X_Forwarded_User", "X_Forwarded_Groups", "X-Original-Url", "True-Client-Ip", "X-Client-Ip",
		"x_auth_request_user", "X-Remote-User", "X_Real_Ip", "Forwarded", "Proxy-Authorization"}
	var extra []string
	for _, h := range spoofed {
		extra = append(extra, h, "mallory")
	}
	r := b.get("/app/page", extra...)
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Text)
	}
	var got echo
	if err := json.Unmarshal([]byte(r.Text), &got); err != nil {
		t.Fatal(err)
	}
	for name, v := range got.Headers {
		if slices.Contains(v, "mallory") {
			t.Errorf("frontend received client-sent %s: %q", name, v)
		}
	}
}

// TestCustomCookieNameNeverReachesUpstream: the proxy was built with the
// default cookie name, the session manager uses another; the gateway
// derives the name from the manager, so the upstream never receives the
// live token and cannot set the cookie.
func TestCustomCookieNameNeverReachesUpstream(t *testing.T) {
	e := newEnv(t)
	const custom = "__Host-Http-custom"
	m, err := cloakroom.New(cloakroom.Config{Store: e.store, Now: e.clock.Now, CookieName: custom})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Sessions, cfg.Metrics = m, nil
	readmit(t, &cfg)
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(gw.Handler())
	t.Cleanup(srv.Close)
	client := srv.Client()

	login, _ := http.NewRequest("POST", srv.URL+"/auth/login", strings.NewReader(`{"username":"alice","password":"`+password+`"}`))
	login.Header.Set("Content-Type", "application/json")
	login.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := client.Do(login)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var token string
	for _, c := range resp.Cookies() {
		if c.Name == custom {
			token = c.Value
		}
	}
	if resp.StatusCode != http.StatusOK || token == "" {
		t.Fatalf("login: %d, token %q", resp.StatusCode, token)
	}
	api, _ := http.NewRequest("GET", srv.URL+"/api/echo", nil)
	api.Header.Set("Cookie", custom+"="+token+"; theme=dark")
	api.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = client.Do(api)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), token) {
		t.Error("the upstream received the live session token")
	}
	var got echo
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if c := got.Headers.Get("Cookie"); c != "theme=dark" {
		t.Errorf("upstream Cookie %q, want theme=dark", c)
	}
}

// TestAdminRevokeIgnoresCase: the admin API takes a user name in any case,
// as the login does.
func TestAdminRevokeIgnoresCase(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("alice")
	if r := e.adminDo(http.MethodGet, "/admin/users/ALICE/sessions", e.token); r.Status != http.StatusOK || !strings.Contains(r.Text, `"handle"`) {
		t.Errorf("list ALICE: %d %s", r.Status, r.Text)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/ALICE/sessions", e.token); r.Status != http.StatusNoContent {
		t.Fatalf("revoke ALICE: %d %s", r.Status, r.Text)
	}
	if b.loggedIn() {
		t.Error("alice is still logged in after DELETE /admin/users/ALICE/sessions")
	}
}

// TestCrossSiteRefusalAsDocumented: a request the session middleware
// refuses as cross-site gets {"error":"csrf"} JSON when a script sent it
// and a small HTML page when it is a navigation, not text/plain.
func TestCrossSiteRefusalAsDocumented(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	r := b.postJSON("/api/things", map[string]string{"a": "b"}, "Sec-Fetch-Site", "cross-site")
	if r.Status != http.StatusForbidden || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("script: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Text)
	}
	if got := r.json(t)["error"]; got != "csrf" {
		t.Errorf("script: error %v, want csrf", got)
	}
	r = b.postForm("/auth/logout", url.Values{}, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusForbidden || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(r.Text, "<h1>Request refused</h1>") {
		t.Errorf("navigation: %d %q %s", r.Status, r.Header.Get("Content-Type"), r.Text)
	}
	if !b.loggedIn() {
		t.Error("the refused cross-site logout ended the session")
	}
}

// TestSessionLimitEndsOldest: with MaxSessionsPerUser 3, a fourth login
// ends the user's oldest session; the new one and the others stay.
func TestSessionLimitEndsOldest(t *testing.T) {
	e := newEnv(t, withSessionCap(3))
	var browsers []*browser
	for range 3 {
		browsers = append(browsers, e.minted("alice"))
		e.clock.Advance(time.Minute)
	}
	bob := e.minted("bob")
	newest := e.browser()
	newest.login("alice")
	if browsers[0].loggedIn() {
		t.Error("the oldest session survived a login beyond the limit")
	}
	for i, b := range append(browsers[1:], newest, bob) {
		if !b.loggedIn() {
			t.Errorf("session %d ended, want only the oldest ended", i+1)
		}
	}
	if ev := e.logs.events("revocation"); len(ev) == 0 || ev[len(ev)-1]["kind"] != "session_limit" {
		t.Errorf("no session_limit revocation in the audit log: %v", ev)
	}
}

// TestStepUpForRevokingOthers: ending one's other sessions needs a login
// or a password re-entry within the last five minutes.
func TestStepUpForRevokingOthers(t *testing.T) {
	e := newEnv(t)
	b, other := e.minted("alice"), e.minted("alice")
	e.clock.Advance(6 * time.Minute)
	csrf := b.csrf()
	r := b.postJSON("/auth/sessions/revoke-others", map[string]string{}, cloakroom.CSRFHeader, csrf)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" {
		t.Fatalf("stale revoke-others: %d %s, want 403 reauth_required", r.Status, r.Text)
	}
	if r := b.postJSON("/auth/reauth", map[string]string{"password": "wrong password!"}, cloakroom.CSRFHeader, csrf); r.Status != http.StatusUnauthorized {
		t.Fatalf("reauth with a wrong password: %d %s", r.Status, r.Text)
	}
	// The account page form asks for the password too.
	nav := []string{"Sec-Fetch-Mode", "navigate"}
	if r := b.postForm("/auth/account/revoke-others", url.Values{"csrf_token": {csrf}}, nav...); r.Status != http.StatusForbidden {
		t.Errorf("stale form without a password: %d", r.Status)
	}
	if !other.loggedIn() {
		t.Fatal("a refused step-up ended the other session")
	}
	oldToken := b.token
	r = b.postJSON("/auth/reauth", map[string]string{"password": password}, cloakroom.CSRFHeader, csrf)
	if r.Status != http.StatusOK || b.token == oldToken {
		t.Fatalf("reauth: %d %s; want 200 and a new token (ASVS 7.2.4)", r.Status, r.Text)
	}
	csrf = r.json(t)["csrf_token"].(string)
	if r := b.postJSON("/auth/sessions/revoke-others", map[string]string{}, cloakroom.CSRFHeader, csrf); r.Status != http.StatusOK {
		t.Fatalf("revoke-others after reauth: %d %s", r.Status, r.Text)
	}
	if other.loggedIn() || !b.loggedIn() {
		t.Error("revoke-others after reauth did not end exactly the other session")
	}
	// Later again: the form's password field is the step-up.
	other = e.minted("alice")
	e.clock.Advance(6 * time.Minute)
	csrf = b.csrf()
	if r := b.postForm("/auth/account/revoke-others", url.Values{"csrf_token": {csrf}, "password": {password}}, nav...); r.Status != http.StatusSeeOther {
		t.Errorf("stale form with the password: %d %s", r.Status, r.Text)
	}
	if other.loggedIn() {
		t.Error("the form with the password did not end the other session")
	}
}

// TestSelfServicePasswordChange: the JSON endpoint and the account page
// change one's password with the current one, and end the other sessions
// when asked (and only then); this session stays.
func TestSelfServicePasswordChange(t *testing.T) {
	e := newEnv(t)
	const newPassword = "a brand new passphrase"
	b, other := e.minted("alice"), e.minted("alice")
	csrf := b.csrf()
	if r := b.postJSON("/auth/password", map[string]any{"current_password": "wrong password!", "new_password": newPassword, "end_other_sessions": true}, cloakroom.CSRFHeader, csrf); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong current password: %d %s", r.Status, r.Text)
	}
	if r := b.postJSON("/auth/password", map[string]any{"current_password": password, "new_password": "short", "end_other_sessions": true}, cloakroom.CSRFHeader, csrf); r.Status != http.StatusBadRequest {
		t.Fatalf("too short a new password: %d %s", r.Status, r.Text)
	}
	if !other.loggedIn() {
		t.Fatal("refused changes ended a session")
	}
	r := b.postJSON("/auth/password", map[string]any{"current_password": password, "new_password": newPassword, "end_other_sessions": true}, cloakroom.CSRFHeader, csrf)
	if r.Status != http.StatusOK || r.json(t)["other_sessions_ended"] != true {
		t.Fatalf("change: %d %s", r.Status, r.Text)
	}
	if other.loggedIn() || !b.loggedIn() {
		t.Error("want the other session ended and this one kept")
	}
	if r := e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusUnauthorized {
		t.Errorf("old password still logs in: %d", r.Status)
	}
	if r := e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": newPassword}); r.Status != http.StatusOK {
		t.Errorf("new password: %d %s", r.Status, r.Text)
	}

	// The account page form, keeping the other sessions.
	other = e.minted("alice")
	r = b.postForm("/auth/account/password", url.Values{"csrf_token": {b.csrf()}, "current_password": {newPassword}, "new_password": {password}},
		"Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account?done=password" {
		t.Fatalf("form: %d %q %s", r.Status, r.Header.Get("Location"), r.Text)
	}
	if !other.loggedIn() {
		t.Error("the form without end_others ended the other session")
	}
	if page := b.get("/auth/account?done=password", "Sec-Fetch-Mode", "navigate"); !strings.Contains(page.Text, `name="current_password"`) || !strings.Contains(page.Text, "Your password was changed.") {
		t.Error("the account page lacks the password form or the notice")
	}
}

// TestPasswordFieldsAreMasked: every password field of the built-in pages
// is type=password, with autocomplete hints so password managers and paste
// work (ASVS 6.2.6, 6.2.7), and nothing blocks pasting.
func TestPasswordFieldsAreMasked(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	nav := []string{"Sec-Fetch-Mode", "navigate"}
	for name, page := range map[string]string{"login": e.browser().get("/auth/login", nav...).Text, "account": b.get("/auth/account", nav...).Text} {
		fields := regexp.MustCompile(`<input[^>]*name="(password|current_password|new_password)"[^>]*>`).FindAllString(page, -1)
		if len(fields) == 0 {
			t.Errorf("%s: no password field", name)
		}
		for _, f := range fields {
			if !strings.Contains(f, `type="password"`) || !strings.Contains(f, `autocomplete="`) {
				t.Errorf("%s: %s is not masked or lacks an autocomplete hint", name, f)
			}
		}
		if strings.Contains(strings.ToLower(page), "onpaste") {
			t.Errorf("%s blocks pasting", name)
		}
	}
}

// TestFavicon: the built-in pages link an icon the gateway serves, allowed
// by their CSP, so browsers log no 404 for /favicon.ico.
func TestFavicon(t *testing.T) {
	e := newEnv(t)
	page := e.browser().get("/auth/login", "Sec-Fetch-Mode", "navigate")
	if !strings.Contains(page.Text, `<link rel="icon" href="/auth/assets/favicon.svg"`) || !strings.Contains(page.Header.Get("Content-Security-Policy"), "img-src 'self'") {
		t.Errorf("the login page does not link an allowed icon")
	}
	if r := e.browser().get("/auth/assets/favicon.svg"); r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "image/svg+xml") {
		t.Errorf("favicon: %d %q", r.Status, r.Header.Get("Content-Type"))
	}
}

// TestStepUpForRevokingOneDevice: ending one other device also needs a
// recent login or the password (ASVS 7.5.2); ending this one never does.
func TestStepUpForRevokingOneDevice(t *testing.T) {
	e := newEnv(t)
	b, other := e.minted("alice"), e.minted("alice")
	handle := handleOf(t, e, other)
	e.clock.Advance(6 * time.Minute)
	csrf := b.csrf()
	r := b.do(http.MethodDelete, "/auth/sessions/"+handle, "", "", cloakroom.CSRFHeader, csrf)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "reauth_required" {
		t.Fatalf("stale DELETE of another device: %d %s, want 403 reauth_required", r.Status, r.Text)
	}
	nav := []string{"Sec-Fetch-Mode", "navigate"}
	if page := b.get("/auth/account", nav...).Text; !strings.Contains(page, `placeholder="Your password"`) {
		t.Error("the stale account page does not ask for the password on the Revoke buttons")
	}
	if r := b.postForm("/auth/account/revoke", url.Values{"csrf_token": {csrf}, "handle": {handle}}, nav...); r.Status != http.StatusForbidden {
		t.Errorf("stale form without a password: %d", r.Status)
	}
	if !other.loggedIn() {
		t.Fatal("a refused step-up ended the other session")
	}
	if r := b.postForm("/auth/account/revoke", url.Values{"csrf_token": {csrf}, "handle": {handle}, "password": {password}}, nav...); r.Status != http.StatusSeeOther {
		t.Errorf("stale form with the password: %d %s", r.Status, r.Text)
	}
	if other.loggedIn() {
		t.Error("the form with the password did not end the other device")
	}
	// Logging this device out needs no step-up.
	e.clock.Advance(6 * time.Minute)
	if r := b.do(http.MethodDelete, "/auth/sessions/"+handleOf(t, e, b), "", "", cloakroom.CSRFHeader, b.csrf()); r.Status != http.StatusNoContent {
		t.Errorf("DELETE of this device: %d %s", r.Status, r.Text)
	}
}

// TestAdminAccountStoreDown: while the account store cannot be reached,
// every admin endpoint that reads it (revoke-all does not) answers 503
// unavailable, like a
// session store outage, not 500; and it works again once the store is back.
func TestAdminAccountStoreDown(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	e.userDB.down.Store(true)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/admin/users/alice/sessions"},
		{http.MethodDelete, "/admin/users/alice/sessions"},
		{http.MethodDelete, "/admin/users/alice/sessions/AAAAAAAAAAAAAAAAAAAAAA"},
	} {
		r := e.adminDo(c.method, c.path, e.token)
		if r.Status != http.StatusServiceUnavailable || r.json(t)["error"] != "unavailable" {
			t.Errorf("%s %s with the account store down: %d %s, want 503 unavailable", c.method, c.path, r.Status, r.Text)
		}
		if strings.Contains(r.Text, errAccountsDown.Error()) {
			t.Errorf("%s %s: the cause reached the client: %s", c.method, c.path, r.Text)
		}
	}
	if !b.loggedIn() {
		t.Fatal("a session ended while the account store was down")
	}
	if ev := e.logs.events("admin request failed"); len(ev) == 0 {
		t.Error("the admin failures were not logged")
	}
	e.userDB.down.Store(false)
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/sessions", e.token); r.Status != http.StatusNoContent {
		t.Fatalf("store back: %d %s", r.Status, r.Text)
	}
}
