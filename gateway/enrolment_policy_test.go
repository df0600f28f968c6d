package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/signin"
)

// requireSecondFactor has the gateway admit through an admission that
// requires a second factor of roles.
func requireSecondFactor(roles ...string) func(*gateway.Config) {
	return func(c *gateway.Config) {
		a, err := signin.New(signin.Config{Sessions: c.Sessions, RequireSecondFactor: roles, Now: c.Now, Logger: c.Logger})
		if err != nil {
			panic(err)
		}
		c.Admission = a
	}
}

func TestEnrolmentRequiredJSON(t *testing.T) {
	e := newTOTPEnv(t, requireSecondFactor("admin"))
	b := e.browser()
	r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("login of an admin without a factor: %d %s", r.Status, r.Text)
	}
	if body := r.json(t); body["error"] != "second_factor_enrolment_required" || body["enrolment_url"] != "/auth/second-factor/enrol" {
		t.Fatalf("login answer = %v", body)
	}
	if line := strings.Join(r.Header.Values("Set-Cookie"), "\n"); !strings.Contains(line, "Max-Age=600") || !strings.Contains(line, "HttpOnly") || !strings.Contains(line, "SameSite=Strict") {
		t.Errorf("pending cookie: %s", line)
	}
	if b.token != "" || b.pending == "" || b.loggedIn() {
		t.Fatalf("after the password: session %q, pending %q", b.token, b.pending)
	}
	// The pending enrolment is no pending sign-in: no code finishes it there.
	if r := b.postJSON("/auth/second-factor", map[string]string{"code": "123456"}); r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" {
		t.Fatalf("a code at /auth/second-factor during an enrolment: %d %s", r.Status, r.Text)
	}
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})

	r = b.get("/auth/second-factor/enrol")
	if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("enrolment: %d %s", r.Status, r.Text)
	}
	offer := r.json(t)
	secret, _ := offer["secret"].(string)
	if len(secret) < 32 || !strings.HasPrefix(offer["uri"].(string), "otpauth://totp/") {
		t.Fatalf("enrolment offer = %v", offer)
	}
	// Asked again, the same secret: the app scanned first stays right.
	if again := b.get("/auth/second-factor/enrol").json(t); again["secret"] != secret {
		t.Errorf("a second GET offers another secret")
	}
	if r := b.postJSON("/auth/second-factor/enrol", map[string]string{"code": "000000"}); r.Status != http.StatusUnauthorized || r.json(t)["error"] != "invalid_code" {
		t.Fatalf("wrong code: %d %s", r.Status, r.Text)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); info.TOTP || b.loggedIn() {
		t.Fatal("a wrong code enabled the factor or admitted a session")
	}
	r = b.postJSON("/auth/second-factor/enrol", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusOK {
		t.Fatalf("right code: %d %s", r.Status, r.Text)
	}
	body := r.json(t)
	codes, _ := body["recovery_codes"].([]any)
	if body["user"] != "alice" || body["csrf_token"] == "" || len(codes) != accounts.RecoveryCodeCount {
		t.Errorf("answer = %v", body)
	}
	if !b.loggedIn() || b.pending != "" {
		t.Fatalf("after the enrolment: logged in %v, pending %q", b.loggedIn(), b.pending)
	}
	if amr := e.amrOfLastSignIn(); amr != "pwd otp" {
		t.Errorf("amr = %q, want pwd otp", amr)
	}
	// From now on alice signs in with both factors, as any TOTP account.
	e.clock.Advance(time.Minute)
	r = e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_required" {
		t.Errorf("next login: %d %s", r.Status, r.Text)
	}
	// A role the policy does not name signs in with the password.
	if r := e.browser().postJSON("/auth/login", map[string]string{"username": "bob", "password": password}); r.Status != http.StatusOK {
		t.Errorf("bob's login: %d %s", r.Status, r.Text)
	}
}

func TestEnrolmentRequiredForm(t *testing.T) {
	e := newTOTPEnv(t, requireSecondFactor("admin"))
	b := e.browser()
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	r := b.postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}, "return_to": {"/app/page"}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/second-factor/enrol" {
		t.Fatalf("form login: %d %s", r.Status, r.Header.Get("Location"))
	}
	r = b.get("/auth/second-factor/enrol", nav...)
	m := secretOnPage.FindStringSubmatch(r.Text)
	if r.Status != http.StatusOK || m == nil || !strings.Contains(r.Text, `src="/auth/second-factor/enrol/qr"`) ||
		!strings.Contains(r.Text, `action="/auth/second-factor/enrol"`) {
		t.Fatalf("enrolment page: %d %s", r.Status, r.Text)
	}
	qr := b.get("/auth/second-factor/enrol/qr", "Sec-Fetch-Dest", "image")
	if qr.Status != http.StatusOK || qr.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(qr.Text, "\x89PNG") {
		t.Fatalf("QR code: %d %v", qr.Status, qr.Header)
	}
	r = b.postForm("/auth/second-factor/enrol", url.Values{"code": {"000000"}}, nav...)
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Text, "not right") || !strings.Contains(r.Text, m[1]) {
		t.Fatalf("wrong code: %d %s", r.Status, r.Text)
	}
	r = b.postForm("/auth/second-factor/enrol", url.Values{"code": {e.totpCode(m[1])}}, nav...)
	if r.Status != http.StatusOK || strings.Count(r.Text, "<li><code>") != accounts.RecoveryCodeCount || !strings.Contains(r.Text, `href="/app/page"`) {
		t.Fatalf("confirmation: %d %s", r.Status, r.Text)
	}
	if !b.loggedIn() {
		t.Fatal("not signed in after the enrolment")
	}
	// Without a pending enrolment the QR code and the page are gone.
	if r := b.get("/auth/second-factor/enrol/qr"); r.Status != http.StatusNotFound {
		t.Errorf("QR code after the enrolment: %d", r.Status)
	}
}

func TestEnrolmentRequiredExpiresAndEnds(t *testing.T) {
	e := newTOTPEnv(t, requireSecondFactor("admin"))
	b := e.browser()
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	secret := b.get("/auth/second-factor/enrol").json(t)["secret"].(string)
	e.clock.Advance(10 * time.Minute)
	if r := b.postJSON("/auth/second-factor/enrol", map[string]string{"code": e.totpCode(secret)}); r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" {
		t.Fatalf("code after 10 minutes: %d %s", r.Status, r.Text)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); info.TOTP || b.loggedIn() {
		t.Fatal("an expired enrolment enabled the factor or admitted a session")
	}

	// Wrong codes end it after three.
	b = e.browser()
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	secret = b.get("/auth/second-factor/enrol").json(t)["secret"].(string)
	for range 3 {
		b.postJSON("/auth/second-factor/enrol", map[string]string{"code": "000000"})
	}
	if r := b.postJSON("/auth/second-factor/enrol", map[string]string{"code": e.totpCode(secret)}); r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" {
		t.Fatalf("right code after 3 wrong ones: %d %s", r.Status, r.Text)
	}

	// A password change meanwhile ends it.
	b = e.browser()
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	secret = b.get("/auth/second-factor/enrol").json(t)["secret"].(string)
	e.clock.Advance(time.Second)
	if err := e.accounts.SetPassword(t.Context(), "alice", "a whole new passphrase"); err != nil {
		t.Fatal(err)
	}
	if r := b.postJSON("/auth/second-factor/enrol", map[string]string{"code": e.totpCode(secret)}); r.Status != http.StatusUnauthorized || b.token != "" {
		t.Fatalf("code after a password change: %d %s", r.Status, r.Text)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); info.TOTP {
		t.Error("the factor was enabled for a changed account")
	}
}

func TestEnrolmentRequiredWithoutKeyFile(t *testing.T) {
	e := newEnv(t, requireSecondFactor("admin"))
	b := e.browser()
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r := b.get("/auth/second-factor/enrol"); r.Status != http.StatusServiceUnavailable || r.json(t)["error"] != "not_configured" || b.loggedIn() {
		t.Fatalf("enrolment without a key file: %d %s", r.Status, r.Text)
	}
}
