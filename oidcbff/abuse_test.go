package oidcbff_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloakroom/cloakroom/oidcbff"
)

// The back-channel logout answers a body over its limit as every endpoint
// does, 413 too_large, also when mounted without the gateway's own bound.
func TestBackchannelLogoutTooLargeBody(t *testing.T) {
	e := mockEnv(t)
	mux := http.NewServeMux()
	e.nodes[0].client.Register(mux, nil)
	req := httptest.NewRequest(http.MethodPost, "/auth/backchannel-logout/"+e.p.name,
		strings.NewReader("logout_token="+strings.Repeat("a", 17<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	var body struct{ Error string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusRequestEntityTooLarge || body.Error != "too_large" {
		t.Errorf("status %d: %s", rec.Code, rec.Body)
	}
}

// preLogin starts a login in a fresh browser and returns its pre-login
// cookie and the state the gateway sent to the provider.
func preLogin(t *testing.T, e *env) (cookie, state string) {
	t.Helper()
	b := e.browser(e.nodes[0])
	auth, err := url.Parse(b.startLogin(""))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.nodes[0].srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == oidcbff.StateCookieName {
			cookie = c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no pre-login cookie")
	}
	return cookie, auth.Query().Get("state")
}

// callbackWith sends the provider's callback from an anonymous client with
// the given pre-login cookie (none when empty), state and code.
func callbackWith(t *testing.T, e *env, cookie, state, code string) int {
	t.Helper()
	if cookie != "" {
		cookie = oidcbff.StateCookieName + "=" + cookie
	}
	return callbackWithHeader(t, e, cookie, state, code)
}

// A callback that does not match a pending login (no pre-login cookie, or
// a state other than its own) never reaches the provider.
func TestForgedCallbacksMakeNoProviderCall(t *testing.T) {
	e := mockEnv(t)
	cookie, _ := preLogin(t, e)
	before := e.p.tokenCalls.Load()
	for i := range 50 {
		c := cookie
		if i%2 == 0 {
			c = ""
		}
		if s := callbackWith(t, e, c, fmt.Sprintf("forged-%d", i), "code"); s != http.StatusBadRequest {
			t.Fatalf("forged callback %d: status %d, want 400", i, s)
		}
	}
	if n := e.p.tokenCalls.Load() - before; n != 0 {
		t.Errorf("50 forged callbacks made %d token endpoint calls, want 0", n)
	}
}

// A pre-login cookie serves one callback: replaying it with made-up codes
// calls the token endpoint (with the client's credentials) once, not once
// per request.
func TestReplayedPreLoginCookieCallsTheProviderOnce(t *testing.T) {
	e := mockEnv(t)
	cookie, state := preLogin(t, e)
	before := e.p.tokenCalls.Load()
	for i := range 50 {
		// 400 once the state is used; 429 past the address's limit.
		if s := callbackWith(t, e, cookie, state, fmt.Sprintf("made-up-code-%d", i)); s != http.StatusBadRequest && s != http.StatusTooManyRequests {
			t.Fatalf("callback %d: status %d, want 400 or 429", i, s)
		}
	}
	if n := e.p.tokenCalls.Load() - before; n != 1 {
		t.Errorf("50 callbacks with one pre-login cookie made %d token endpoint calls, want 1", n)
	}
	// A real login works once the address's budget is back.
	e.clock.Advance(time.Minute)
	e.browser(e.nodes[0]).mustLogin()
}

// Token endpoint calls are limited per client address: fresh pre-login
// cookies (free to get) do not buy a client unlimited calls, and the budget
// comes back with time.
func TestCallbackTokenCallsAreLimitedPerClient(t *testing.T) {
	e := mockEnv(t)
	before := e.p.tokenCalls.Load()
	limited := 0
	for i := range 50 {
		cookie, state := preLogin(t, e)
		switch s := callbackWith(t, e, cookie, state, fmt.Sprintf("made-up-code-%d", i)); s {
		case http.StatusTooManyRequests:
			limited++
		case http.StatusBadRequest:
		default:
			t.Fatalf("callback %d: status %d", i, s)
		}
	}
	calls := e.p.tokenCalls.Load() - before
	if calls > oidcbff.DefaultCallbackLimit || limited == 0 {
		t.Errorf("50 callbacks from one address: %d token endpoint calls, %d refused; want at most %d calls",
			calls, limited, oidcbff.DefaultCallbackLimit)
	}
	if calls+int64(limited) != 50 {
		t.Errorf("%d calls and %d refusals for 50 callbacks", calls, limited)
	}
	// A minute later the client may sign in again.
	e.clock.Advance(time.Minute)
	e.browser(e.nodes[0]).mustLogin()
}

// Logout tokens naming keys the provider does not have make the gateway
// refetch the provider's keys at most once per JWKSRefetchInterval,
// however many come.
func TestUnknownKeyIDsRefetchTheKeysAtMostOncePerInterval(t *testing.T) {
	e := mockEnv(t)
	b := e.browser(e.nodes[0])
	b.mustLogin() // the keys are fetched once, for the ID token
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forged := func(i int) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, e.p.logoutClaims(e.clock.Now(), subOf["mock"], ""))
		tok.Header["kid"], tok.Header["typ"] = fmt.Sprintf("unknown-%d", i), "logout+jwt"
		s, err := tok.SignedString(otherKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Past the interval of the login's fetch.
	e.clock.Advance(oidcbff.DefaultJWKSRefetchInterval)
	before := e.p.jwksCalls.Load()
	for i := range 50 {
		if s := e.logoutToken(forged(i)); s != http.StatusBadRequest {
			t.Fatalf("forged logout token %d: status %d, want 400", i, s)
		}
	}
	if n := e.p.jwksCalls.Load() - before; n != 1 {
		t.Errorf("50 logout tokens with unknown kids made %d key set fetches, want 1", n)
	}
	e.clock.Advance(oidcbff.DefaultJWKSRefetchInterval)
	e.logoutToken(forged(50))
	if n := e.p.jwksCalls.Load() - before; n != 2 {
		t.Errorf("after the interval: %d key set fetches in all, want 2", n)
	}
	if !e.alive(b) {
		t.Fatal("a forged logout token ended the session")
	}
	// A genuine logout token, signed with a known key, still works.
	valid := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), subOf["mock"], ""))
	if s := e.logoutToken(valid); s != http.StatusOK || e.alive(b) {
		t.Errorf("genuine logout token: status %d", s)
	}
}

// mockEnv is one gateway in front of the mock provider, signing in alice.
func mockEnv(t *testing.T) *env {
	pc := providerCases(t)[0]
	return newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
}

// A callback carrying the pre-login cookie twice is refused before the
// provider is called, whichever copy names the state and whatever the
// other holds: it is read by the session cookie's rules, where the
// standard parser dropped a copy it found malformed and read the other.
func TestRepeatedPreLoginCookieRefused(t *testing.T) {
	e := mockEnv(t)
	own, state := preLogin(t, e)
	planted, _ := preLogin(t, e)
	n := oidcbff.StateCookieName + "="
	before := e.p.tokenCalls.Load()
	for _, cookie := range []string{
		n + planted + "; " + n + own,
		n + own + "; " + n + planted,
		n + own + "; " + n + "not a sealed value",
		n + "\"x\"y; " + n + own,
	} {
		if s := callbackWithHeader(t, e, cookie, state, "code"); s != http.StatusBadRequest {
			t.Errorf("Cookie %q: status %d, want 400", cookie, s)
		}
	}
	if n := e.p.tokenCalls.Load() - before; n != 0 {
		t.Errorf("callbacks with the pre-login cookie twice made %d token endpoint calls, want 0", n)
	}
	if !strings.Contains(e.logs.String(), "the cookie is sent more than once") {
		t.Errorf("the refusal does not say why:\n%s", e.logs.String())
	}
}

// callbackWithHeader sends the provider's callback from an anonymous
// client with the given Cookie header (none when empty), state and code.
func callbackWithHeader(t *testing.T, e *env, cookieHeader, state, code string) int {
	t.Helper()
	q := url.Values{"state": {state}, "code": {code}}
	req, _ := http.NewRequest(http.MethodGet, e.nodes[0].srv.URL+"/auth/callback/"+e.p.name+"?"+q.Encode(), nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	if cookieHeader != "" {
		req.Header.Set("Cookie", cookieHeader)
	}
	client := *e.nodes[0].srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
