package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// anonymousPost sends POST path with a JSON body from the client address
// ip straight to the gateway's handler, as a same-origin script.
func (e *env) anonymousPost(ip, path, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "https://localhost"+path, strings.NewReader(body))
	req.RemoteAddr = ip + ":40000"
	if strings.Contains(ip, ":") {
		req.RemoteAddr = "[" + ip + "]:40000"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	rec := httptest.NewRecorder()
	e.gw.Handler().ServeHTTP(rec, req)
	return rec
}

// TestPasskeyBeginFloodBounded: one address asking for sign-in
// ceremonies gets its burst (20), each one record in the store, then 429
// throttled with Retry-After and no record written; an address in the
// same IPv6 /64 shares the budget, another address does not; a token
// comes back after its refill time on the injectable clock.
func TestPasskeyBeginFloodBounded(t *testing.T) {
	e := newPasskeyEnv(t)
	const flooder = "2001:db8:1:2::1"
	ok, throttled := 0, 0
	before := e.store.auxCommits.Load()
	for range 100 {
		switch r := e.anonymousPost(flooder, "/auth/passkey/begin", "{}"); r.Code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			throttled++
			if r.Header().Get("Retry-After") != "2" || !strings.Contains(r.Body.String(), `"error":"throttled"`) {
				t.Fatalf("429 answer: %v %s", r.Header(), r.Body)
			}
		default:
			t.Fatalf("begin: %d %s", r.Code, r.Body)
		}
	}
	if ok != 20 || throttled != 80 {
		t.Errorf("of 100 begins from one address: %d answered, %d throttled; want 20 and 80", ok, throttled)
	}
	if written := e.store.auxCommits.Load() - before; written != 20 {
		t.Errorf("%d ceremony records written, want 20", written)
	}
	if r := e.anonymousPost("2001:db8:1:2::ffff", "/auth/passkey/begin", "{}"); r.Code != http.StatusTooManyRequests {
		t.Errorf("the same /64: %d, want 429", r.Code)
	}
	// A finish from the flooder is throttled before its body is read.
	if r := e.anonymousPost(flooder, "/auth/passkey/finish", `{"credential":{}}`); r.Code != http.StatusTooManyRequests {
		t.Errorf("finish from the flooder: %d, want 429", r.Code)
	}
	if r := e.anonymousPost("192.0.2.7", "/auth/passkey/begin", "{}"); r.Code != http.StatusOK {
		t.Errorf("another address: %d, want 200", r.Code)
	}
	e.clock.Advance(2 * time.Second) // one token at 0.5 a second
	if r := e.anonymousPost(flooder, "/auth/passkey/begin", "{}"); r.Code != http.StatusOK {
		t.Errorf("after the refill: %d, want 200", r.Code)
	}
	if r := e.anonymousPost(flooder, "/auth/passkey/begin", "{}"); r.Code != http.StatusTooManyRequests {
		t.Errorf("the refill's second begin: %d, want 429", r.Code)
	}
	n := 0
	for _, ev := range e.logs.events("login") {
		if ev["outcome"] == "throttled" && ev["method"] == "passkey" {
			n++
		}
	}
	if n != 80+1+1+1 {
		t.Errorf("%d throttled passkey login lines, want 83", n)
	}
}

// TestPasskeyBeginFloodFromManyAddresses: addresses each within their
// own budget still meet the gateway-wide one (500 at once): the records
// written stop there.
func TestPasskeyBeginFloodFromManyAddresses(t *testing.T) {
	e := newPasskeyEnv(t)
	ok := 0
	before := e.store.auxCommits.Load()
	for i := range 600 {
		ip := "10.0." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250+1)
		switch r := e.anonymousPost(ip, "/auth/passkey/begin", "{}"); r.Code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("begin: %d %s", r.Code, r.Body)
		}
	}
	if ok != 500 {
		t.Errorf("%d of 600 begins from 600 addresses answered, want 500", ok)
	}
	if written := e.store.auxCommits.Load() - before; written != 500 {
		t.Errorf("%d records written, want 500", written)
	}
}

// TestPasskeySecondFactorNeedsPendingAndPasskey: the passkey step after
// the password answers only a browser with a pending sign-in, only for an
// account with a passkey, and a finish needs its own begin.
func TestPasskeySecondFactorNeedsPendingAndPasskey(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWithAccounts(t, func(c *accounts.Config) {
		c.Sealer = keys
		c.Passkeys = accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}}
	})
	code := func(r response) string { t.Helper(); s, _ := r.json(t)["error"].(string); return s }
	stranger := e.browser()
	if r := stranger.postJSON("/auth/second-factor/passkey/begin", map[string]any{}); r.Status != http.StatusUnauthorized || code(r) != "second_factor_expired" {
		t.Errorf("begin without a pending sign-in: %d %s", r.Status, r.Text)
	}
	if r := stranger.postJSON("/auth/second-factor/passkey/finish", bogusCredential); r.Status != http.StatusUnauthorized {
		t.Errorf("finish without a pending sign-in: %d %s", r.Status, r.Text)
	}

	e.enrolTOTP("alice") // a code, no passkey
	b := e.browser()
	r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r.Status != http.StatusUnauthorized || r.json(t)["passkey_begin_url"] != nil {
		t.Fatalf("login of an account without passkeys: %d %s", r.Status, r.Text)
	}
	if r := b.postJSON("/auth/second-factor/passkey/finish", bogusCredential); r.Status != http.StatusUnauthorized || code(r) != "passkey_expired" {
		t.Errorf("finish before a begin: %d %s", r.Status, r.Text)
	}
	if r := b.postJSON("/auth/second-factor/passkey/begin", map[string]any{}); r.Status != http.StatusConflict || code(r) != "no_passkey" {
		t.Errorf("begin for an account without passkeys: %d %s", r.Status, r.Text)
	}
	if page := b.get("/auth/second-factor", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"); strings.Contains(page.Text, "passkey-second-factor") {
		t.Error("the second-factor page offers a passkey the account does not have")
	}
	if b.loggedIn() {
		t.Error("signed in without the second factor")
	}

	// The pending sign-in expires for the passkey step as for the code.
	late := e.browser()
	late.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	e.clock.Advance(5 * time.Minute)
	if r := late.postJSON("/auth/second-factor/passkey/begin", map[string]any{}); r.Status != http.StatusUnauthorized || code(r) != "second_factor_expired" {
		t.Errorf("begin after the pending sign-in expired: %d %s", r.Status, r.Text)
	}
}
