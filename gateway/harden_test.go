package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/proxy"
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
		if strings.HasPrefix(l, gateway.DeviceCookie+"=") {
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
	route, err := proxy.ParseRoute("/api/=" + e.api.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New(proxy.Config{Routes: []proxy.Route{route}, SessionCookie: cloakroom.DefaultCookieName}) // a wrong guess
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Sessions, cfg.Proxy, cfg.Metrics = m, px, nil
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
