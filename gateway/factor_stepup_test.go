package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// TestRevokeOthersNeedsTheFactorOnceEnrolled: once an account has a second
// factor, a session signed in with the password alone (before the
// enrolment) cannot end the user's other sessions; a session signed in
// with the code can. Accounts without a factor are not asked.
func TestRevokeOthersNeedsTheFactorOnceEnrolled(t *testing.T) {
	e := newTOTPEnv(t)
	passwordOnly := e.browser()
	csrf := passwordOnly.login("alice")
	secret, _ := e.enrolTOTP("alice")
	withCode := e.browser()
	withCode.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	r := withCode.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusOK {
		t.Fatalf("second factor: %d %s", r.Status, r.Text)
	}
	codeCSRF := r.json(t)["csrf_token"].(string)

	r = passwordOnly.do(http.MethodPost, "/auth/sessions/revoke-others", "", "", "X-CSRF-Token", csrf)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "second_factor_required" {
		t.Fatalf("revoke-others from a password-only session: %d %s", r.Status, r.Text)
	}
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	r = passwordOnly.postForm("/auth/account/revoke-others", url.Values{"csrf_token": {csrf}}, nav...)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Text, "authenticator app") {
		t.Fatalf("the account form from a password-only session: %d %s", r.Status, r.Text)
	}
	if !withCode.loggedIn() {
		t.Fatal("a refused revoke-others ended a session")
	}

	r = withCode.do(http.MethodPost, "/auth/sessions/revoke-others", "", "", "X-CSRF-Token", codeCSRF)
	if r.Status != http.StatusOK {
		t.Fatalf("revoke-others from the session with the code: %d %s", r.Status, r.Text)
	}
	if passwordOnly.loggedIn() {
		t.Error("the password-only session survived revoke-others")
	}

	// bob has no factor: his password session may end the others.
	b := e.browser()
	bobCSRF := b.login("bob")
	e.browser().login("bob")
	if r := b.do(http.MethodPost, "/auth/sessions/revoke-others", "", "", "X-CSRF-Token", bobCSRF); r.Status != http.StatusOK {
		t.Errorf("bob's revoke-others: %d %s", r.Status, r.Text)
	}
}

// TestFactorStepUpFailsClosed: when the account store cannot say whether
// the account has a factor, the action is refused.
func TestFactorStepUpFailsClosed(t *testing.T) {
	e := newTOTPEnv(t)
	b := e.browser()
	csrf := b.login("bob")
	e.userDB.down.Store(true)
	r := b.do(http.MethodPost, "/auth/sessions/revoke-others", "", "", "X-CSRF-Token", csrf)
	e.userDB.down.Store(false)
	if r.Status < 500 {
		t.Fatalf("revoke-others with the account store down: %d %s", r.Status, r.Text)
	}
	if !b.loggedIn() {
		t.Error("the session ended")
	}
}

// currentHandle is the handle of b's own session, from its device list.
func (b *browser) currentHandle(t *testing.T) string {
	t.Helper()
	r := b.get("/auth/sessions")
	var v struct {
		Sessions []struct {
			Handle  string `json:"handle"`
			Current bool   `json:"current"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(r.Text), &v); err != nil {
		t.Fatalf("sessions: %d %s", r.Status, r.Text)
	}
	for _, s := range v.Sessions {
		if s.Current {
			return s.Handle
		}
	}
	t.Fatalf("no current session in %s", r.Text)
	return ""
}

// TestRevokeOneDeviceNeedsTheFactorOnceEnrolled: once the account has a
// second factor, a password-only session cannot end another device's
// session (the JSON endpoint and the account form), though it can end
// its own; a session with the code can end the password-only one.
func TestRevokeOneDeviceNeedsTheFactorOnceEnrolled(t *testing.T) {
	e := newTOTPEnv(t)
	passwordOnly, spare := e.browser(), e.browser()
	csrf := passwordOnly.login("alice")
	spareCSRF := spare.login("alice")
	secret, _ := e.enrolTOTP("alice")
	withCode := e.browser()
	withCode.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	r := withCode.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusOK {
		t.Fatalf("second factor: %d %s", r.Status, r.Text)
	}
	codeCSRF := r.json(t)["csrf_token"].(string)
	target := withCode.currentHandle(t)

	r = passwordOnly.do(http.MethodDelete, "/auth/sessions/"+target, "", "", "X-CSRF-Token", csrf)
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "second_factor_required" {
		t.Fatalf("DELETE another device from a password-only session: %d %s", r.Status, r.Text)
	}
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	r = passwordOnly.postForm("/auth/account/revoke", url.Values{"csrf_token": {csrf}, "handle": {target}}, nav...)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Text, "authenticator app") {
		t.Fatalf("the account form's revoke from a password-only session: %d %s", r.Status, r.Text)
	}
	if !withCode.loggedIn() {
		t.Fatal("a refused revoke ended the session")
	}

	// With the code, the other way round works.
	own := passwordOnly.currentHandle(t)
	if r := withCode.do(http.MethodDelete, "/auth/sessions/"+own, "", "", "X-CSRF-Token", codeCSRF); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE the password-only device from the session with the code: %d %s", r.Status, r.Text)
	}
	if passwordOnly.loggedIn() {
		t.Error("the password-only session survived")
	}

	// A password-only session may still end itself.
	if r := spare.do(http.MethodDelete, "/auth/sessions/"+spare.currentHandle(t), "", "", "X-CSRF-Token", spareCSRF); r.Status != http.StatusNoContent || spare.loggedIn() {
		t.Errorf("a password-only session ending itself: %d %s", r.Status, r.Text)
	}
}

// TestFactorRoutesNeedTheSecondFactor: under a FactorRoutes prefix, a
// session signed in with the password alone gets 403
// second_factor_required (a page for a navigation) and the upstream sees
// nothing; the same user's session with the code passes; other routes
// are not asked.
func TestFactorRoutesNeedTheSecondFactor(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWithAccounts(t, func(c *accounts.Config) { c.Sealer = keys },
		func(c *gateway.Config) { c.FactorRoutes = []string{"/api/admin/"} })
	passwordOnly := e.browser()
	passwordOnly.login("alice")
	secret, _ := e.enrolTOTP("alice")
	withCode := e.browser()
	withCode.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r := withCode.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)}); r.Status != http.StatusOK {
		t.Fatalf("second factor: %d %s", r.Status, r.Text)
	}

	before := e.api.hits.Load()
	r := passwordOnly.get("/api/admin/users")
	if r.Status != http.StatusForbidden || r.json(t)["error"] != "second_factor_required" {
		t.Fatalf("a factor route from a password-only session: %d %s", r.Status, r.Text)
	}
	if page := passwordOnly.get("/api/admin", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"); page.Status != http.StatusForbidden || !strings.Contains(page.Text, "two-step verification") {
		t.Errorf("a navigation to the factor route: %d %s", page.Status, page.Text)
	}
	if e.api.hits.Load() != before {
		t.Error("the upstream saw a refused request")
	}
	if r := passwordOnly.get("/api/notes"); r.Status != http.StatusOK {
		t.Errorf("another route from the password-only session: %d %s", r.Status, r.Text)
	}
	if r := withCode.get("/api/admin/users"); r.Status != http.StatusOK {
		t.Errorf("the factor route from the session with the code: %d %s", r.Status, r.Text)
	}

	if _, err := gateway.New(func() gateway.Config { c := e.cfg; c.FactorRoutes = []string{"api/"}; return c }()); err == nil {
		t.Error("a factor route without a leading / was accepted")
	}
}

// TestProxyCarriesAMR: how the user signed in reaches the upstream, in
// X-Forwarded-Amr (a forged one from the browser dropped) and in the
// internal JWT's amr claim: pwd after the password, pwd and otp after the
// code.
func TestProxyCarriesAMR(t *testing.T) {
	e := newTOTPEnv(t)
	jwks := e.browser().get("/.well-known/jwks.json")
	check := func(b *browser, want []string) {
		t.Helper()
		r := b.get("/api/data", "X-Forwarded-Amr", "hwk,mfa")
		var got struct {
			Headers http.Header `json:"headers"`
		}
		if err := json.Unmarshal([]byte(r.Text), &got); err != nil || r.Status != http.StatusOK {
			t.Fatalf("proxied: %d %s", r.Status, r.Text)
		}
		if v := got.Headers.Values("X-Forwarded-Amr"); len(v) != 1 || v[0] != strings.Join(want, ",") {
			t.Errorf("X-Forwarded-Amr %q, want %q", v, strings.Join(want, ","))
		}
		token := strings.TrimPrefix(got.Headers.Get("Authorization"), "Bearer ")
		claims, err := upstreamjwt.Verify(token, []byte(jwks.Text), "/api/", time.Now())
		if err != nil || !slices.Equal(claims.AMR, want) || !slices.Equal(claims.Identity().AMR, want) {
			t.Errorf("JWT amr %q (%v), want %q", claims.AMR, err, want)
		}
	}
	passwordOnly := e.browser()
	passwordOnly.login("alice")
	check(passwordOnly, []string{"pwd"})

	secret, _ := e.enrolTOTP("alice")
	withCode := e.browser()
	withCode.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r := withCode.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)}); r.Status != http.StatusOK {
		t.Fatalf("second factor: %d %s", r.Status, r.Text)
	}
	check(withCode, []string{"pwd", "otp"})
}
