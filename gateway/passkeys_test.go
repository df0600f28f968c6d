package gateway_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/gateway"
)

func newPasskeyEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	return newEnvWithAccounts(t, func(c *accounts.Config) {
		c.Passkeys = accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}}
	}, opts...)
}

// passkeyCookieOf returns the passkey ceremony cookie r sets.
func passkeyCookieOf(t *testing.T, r response) *http.Cookie {
	t.Helper()
	for _, line := range r.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == "__Host-Http-passkey" {
			return c
		}
	}
	t.Fatalf("no passkey cookie set: %v", r.Header.Values("Set-Cookie"))
	return nil
}

// A credential no authenticator made: parsed and refused.
var bogusCredential = map[string]any{
	"credential": map[string]any{
		"id": "AAAA", "rawId": "AAAA", "type": "public-key",
		"response": map[string]any{"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA", "userHandle": "Ym9i"},
	},
}

// TestPasskeyCeremonySingleUseAndBound: a sign-in ceremony's challenge
// is answered once, only by the browser holding its cookie, and only
// within its lifetime.
func TestPasskeyCeremonySingleUseAndBound(t *testing.T) {
	e := newPasskeyEnv(t)
	b := e.browser()
	r := b.postJSON("/auth/passkey/begin", map[string]any{})
	if r.Status != http.StatusOK {
		t.Fatalf("begin: %d %s", r.Status, r.Text)
	}
	pk, _ := r.json(t)["publicKey"].(map[string]any)
	if pk["challenge"] == "" || pk["rpId"] != "example.com" || pk["allowCredentials"] != nil {
		t.Errorf("options: %s", r.Text)
	}
	challenge, _ := pk["challenge"].(string)
	if raw, err := base64.RawURLEncoding.DecodeString(challenge); err != nil || len(raw) < 32 {
		t.Errorf("challenge %q: %d bytes (%v), want 256 bits from the CSPRNG", challenge, len(raw), err)
	}
	c := passkeyCookieOf(t, r)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 300 || c.Path != "/" {
		t.Errorf("ceremony cookie: %+v", c)
	}
	finish := func(cookie string) response {
		t.Helper()
		extra := []string{}
		if cookie != "" {
			extra = []string{"Cookie", "__Host-Http-passkey=" + cookie}
		}
		return b.postJSON("/auth/passkey/finish", bogusCredential, extra...)
	}
	code := func(r response) string { t.Helper(); s, _ := r.json(t)["error"].(string); return s }

	// Another browser (no cookie, or another value) cannot answer it.
	if r := finish(""); r.Status != http.StatusUnauthorized || code(r) != "passkey_expired" {
		t.Errorf("finish without the cookie: %d %s", r.Status, r.Text)
	}
	if r := finish("not-" + c.Value); r.Status != http.StatusUnauthorized || code(r) != "passkey_expired" {
		t.Errorf("finish with another cookie: %d %s", r.Status, r.Text)
	}
	// The first answer uses it up, refused or not.
	r = finish(c.Value)
	if r.Status != http.StatusUnauthorized || code(r) != "passkey_refused" {
		t.Errorf("first finish: %d %s", r.Status, r.Text)
	}
	if c := passkeyCookieOf(t, r); c.MaxAge >= 0 {
		t.Errorf("the ceremony cookie is not expired after use: %+v", c)
	}
	if r := finish(c.Value); r.Status != http.StatusUnauthorized || code(r) != "passkey_expired" {
		t.Errorf("second finish: %d %s", r.Status, r.Text)
	}
	if b.loggedIn() {
		t.Error("a refused passkey signed in")
	}

	// A ceremony expires after accounts.PasskeyCeremonyLifetime.
	c = passkeyCookieOf(t, b.postJSON("/auth/passkey/begin", map[string]any{}))
	e.clock.Advance(accounts.PasskeyCeremonyLifetime)
	if r := finish(c.Value); r.Status != http.StatusUnauthorized || code(r) != "passkey_expired" {
		t.Errorf("finish after the lifetime: %d %s", r.Status, r.Text)
	}
}

// TestPasskeyPagesAndCSP: with passkeys on, the login page offers the
// button and the pages may run the gateway's own script, never inline
// code; without a relying party, no route, button or script.
func TestPasskeyPagesAndCSP(t *testing.T) {
	on := newPasskeyEnv(t).browser()
	r := on.get("/auth/login", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
	csp := r.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP with passkeys: %q", csp)
	}
	if !strings.Contains(r.Text, `id="passkey-signin"`) || !strings.Contains(r.Text, `src="/auth/assets/passkey.js"`) {
		t.Error("the login page has no passkey button or script")
	}
	if strings.Contains(r.Text, "<script>") {
		t.Error("the login page has an inline script")
	}
	js := on.get("/auth/assets/passkey.js")
	if js.Status != http.StatusOK || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("passkey.js: %d %s", js.Status, js.Header.Get("Content-Type"))
	}

	off := newEnv(t).browser()
	r = off.get("/auth/login", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
	if strings.Contains(r.Header.Get("Content-Security-Policy"), "script-src") || strings.Contains(r.Text, "passkey") {
		t.Errorf("passkeys off, the login page still offers them (CSP %q)", r.Header.Get("Content-Security-Policy"))
	}
	if r := off.postJSON("/auth/passkey/begin", map[string]any{}); r.Status != http.StatusNotFound {
		t.Errorf("passkeys off, begin: %d", r.Status)
	}
}

// TestPasskeyRegistrationNeedsRecentSignIn: an old sign-in adds no
// passkey without the password again.
func TestPasskeyRegistrationNeedsRecentSignIn(t *testing.T) {
	e := newPasskeyEnv(t)
	b := e.browser()
	csrf := b.login("bob")
	e.clock.Advance(gateway.DefaultStepUpWindow + time.Minute) // the env leaves the window at its default
	r := b.postForm("/auth/account/passkeys", url.Values{"csrf_token": {csrf}, "name": {"laptop"}},
		"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
	if r.Status != http.StatusForbidden || !strings.Contains(r.Text, "add or remove a passkey") {
		t.Errorf("old sign-in: %d", r.Status)
	}
	r = b.postForm("/auth/account/passkeys", url.Values{"csrf_token": {csrf}, "name": {"  laptop "}, "password": {password}},
		"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account/passkeys/new" {
		t.Errorf("with the password: %d %s", r.Status, r.Header.Get("Location"))
	}
	page := b.get("/auth/account/passkeys/new", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document")
	if page.Status != http.StatusOK || !strings.Contains(page.Text, "data-options=") || !strings.Contains(page.Text, `id="passkey-new-name">laptop</strong>`) {
		t.Errorf("registration page: %d", page.Status)
	}
	// Another session of the same user has no such ceremony.
	other := e.browser()
	other.login("bob")
	if r := other.get("/auth/account/passkeys/new", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"); r.Status != http.StatusSeeOther ||
		!strings.Contains(r.Header.Get("Location"), "passkey=expired") {
		t.Errorf("another session's registration page: %d %s", r.Status, r.Header.Get("Location"))
	}
}
