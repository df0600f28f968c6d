package gateway_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// newTOTPEnv is an env whose accounts seal TOTP secrets.
func newTOTPEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWithAccounts(t, func(c *accounts.Config) { c.Sealer = keys }, opts...)
}

// enrolTOTP gives user a confirmed TOTP factor through the account
// service and returns its secret and recovery codes, with the clock moved
// past the confirming code's step.
func (e *env) enrolTOTP(user string) (string, []string) {
	e.t.Helper()
	en, err := e.accounts.BeginTOTP(e.t.Context(), user)
	if err != nil {
		e.t.Fatal(err)
	}
	codes, err := e.accounts.ConfirmTOTP(e.t.Context(), user, en.Sealed, e.totpCode(en.Secret))
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	return en.Secret, codes
}

func (e *env) totpCode(secret string) string {
	e.t.Helper()
	code, err := accounts.TOTPCode(secret, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// amrOfLastSignIn is the amr the admission logged for the last sign-in.
func (e *env) amrOfLastSignIn() string {
	e.t.Helper()
	events := e.logs.events("sign-in")
	if len(events) == 0 {
		e.t.Fatal("no sign-in logged")
	}
	amr, _ := events[len(events)-1]["amr"].(string)
	return amr
}

func TestSecondFactorJSONLogin(t *testing.T) {
	e := newTOTPEnv(t)
	secret, _ := e.enrolTOTP("alice")
	b := e.browser()
	r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("login of a TOTP account: %d %s", r.Status, r.Text)
	}
	body := r.json(t)
	if body["error"] != "second_factor_required" || body["second_factor_url"] != "/auth/second-factor" {
		t.Fatalf("login answer = %v", body)
	}
	// No session yet: only the pending sign-in's cookie.
	if b.token != "" || b.pending == "" || b.loggedIn() {
		t.Fatalf("after the password: session %q, pending %q", b.token, b.pending)
	}
	if line := strings.Join(r.Header.Values("Set-Cookie"), "\n"); !strings.Contains(line, "__Host-Http-pending=") ||
		!strings.Contains(line, "HttpOnly") || !strings.Contains(line, "Secure") || !strings.Contains(line, "SameSite=Strict") || !strings.Contains(line, "Max-Age=300") {
		t.Errorf("pending cookie: %s", line)
	}
	pending := b.pending

	r = b.postJSON("/auth/second-factor", map[string]string{"code": "000000"})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "invalid_code" {
		t.Fatalf("wrong code: %d %s", r.Status, r.Text)
	}
	r = b.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusOK {
		t.Fatalf("right code: %d %s", r.Status, r.Text)
	}
	if got := r.json(t); got["user"] != "alice" || got["second_factor"] != "totp" || got["csrf_token"] == "" {
		t.Errorf("answer = %v", got)
	}
	if !b.loggedIn() || b.pending != "" {
		t.Fatalf("after the code: logged in %v, pending cookie %q", b.loggedIn(), b.pending)
	}
	if amr := e.amrOfLastSignIn(); amr != "pwd otp" {
		t.Errorf("amr = %q, want pwd otp", amr)
	}
	// The pending sign-in was used: its cookie value admits nothing more.
	other := e.browser()
	other.pending = pending
	e.clock.Advance(accounts.TOTPPeriod)
	r = other.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" || other.token != "" {
		t.Errorf("pending sign-in used twice: %d %s", r.Status, r.Text)
	}
}

func TestSecondFactorPendingExpires(t *testing.T) {
	e := newTOTPEnv(t)
	secret, _ := e.enrolTOTP("alice")
	b := e.browser()
	if r := b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusUnauthorized {
		t.Fatalf("login: %d %s", r.Status, r.Text)
	}
	e.clock.Advance(5 * time.Minute)
	r := b.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" {
		t.Fatalf("code after 5 minutes: %d %s", r.Status, r.Text)
	}
	if b.token != "" || b.loggedIn() {
		t.Error("an expired pending sign-in admitted a session")
	}
}

func TestSecondFactorAttemptsBounded(t *testing.T) {
	e := newTOTPEnv(t)
	secret, _ := e.enrolTOTP("alice")
	b := e.browser()
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	for i := range 3 {
		if r := b.postJSON("/auth/second-factor", map[string]string{"code": "000000"}); r.Status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d %s", i, r.Status, r.Text)
		}
		e.clock.Advance(time.Minute) // past the login throttle's delay, within the pending sign-in's life
	}
	r := b.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)})
	if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "second_factor_expired" {
		t.Fatalf("right code after 3 wrong ones: %d %s; want the password asked again", r.Status, r.Text)
	}
}

func TestSecondFactorFormLoginAndRecoveryCode(t *testing.T) {
	e := newTOTPEnv(t)
	_, codes := e.enrolTOTP("alice")
	b := e.browser()
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	r := b.postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}, "return_to": {"/app/page"}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/second-factor" {
		t.Fatalf("form login: %d %s", r.Status, r.Header.Get("Location"))
	}
	r = b.get("/auth/second-factor", nav...)
	if r.Status != http.StatusOK || !strings.Contains(r.Text, `id="second-factor-form"`) || !strings.Contains(r.Text, `autocomplete="one-time-code"`) {
		t.Fatalf("code page: %d %s", r.Status, r.Text)
	}
	r = b.postForm("/auth/second-factor", url.Values{"code": {"999999"}}, nav...)
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Text, "Wrong code") {
		t.Fatalf("wrong code: %d", r.Status)
	}
	r = b.postForm("/auth/second-factor", url.Values{"code": {codes[0]}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/app/page" {
		t.Fatalf("recovery code: %d %s", r.Status, r.Header.Get("Location"))
	}
	if !b.loggedIn() {
		t.Fatal("not logged in after the recovery code")
	}
	// The code is spent.
	b2 := e.browser()
	b2.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r := b2.postJSON("/auth/second-factor", map[string]string{"code": codes[0]}); r.Status != http.StatusUnauthorized {
		t.Errorf("a recovery code twice: %d %s", r.Status, r.Text)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); info.RecoveryCodesLeft != accounts.RecoveryCodeCount-1 {
		t.Errorf("%d recovery codes left", info.RecoveryCodesLeft)
	}
}

var secretOnPage = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)

func TestTOTPEnrolmentNeedsRecentSignInAndACode(t *testing.T) {
	e := newTOTPEnv(t)
	b := e.minted("bob")
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	page := b.get("/auth/account", nav...)
	if !strings.Contains(page.Text, `id="totp-start"`) {
		t.Fatalf("account page without the TOTP form: %s", page.Text)
	}
	csrf := b.csrf()
	// An old sign-in: the form asks for the password first.
	e.clock.Advance(10 * time.Minute)
	r := b.postForm("/auth/account/totp", url.Values{"csrf_token": {csrf}}, nav...)
	if r.Status != http.StatusForbidden || !strings.Contains(r.Text, "set up an authenticator app") {
		t.Fatalf("enrolment with an old sign-in: %d %s", r.Status, r.Text)
	}
	r = b.postForm("/auth/account/totp", url.Values{"csrf_token": {csrf}, "password": {password}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account/totp" {
		t.Fatalf("enrolment with the password: %d %s", r.Status, r.Text)
	}
	r = b.get("/auth/account/totp", nav...)
	m := secretOnPage.FindStringSubmatch(r.Text)
	if r.Status != http.StatusOK || m == nil || !strings.Contains(r.Text, "otpauth://totp/") {
		t.Fatalf("enrolment page: %d %s", r.Status, r.Text)
	}
	secret := m[1]
	qr := b.get("/auth/account/totp/qr", "Sec-Fetch-Dest", "image")
	if qr.Status != http.StatusOK || qr.Header.Get("Content-Type") != "image/png" || qr.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(qr.Text, "\x89PNG") {
		t.Fatalf("QR code: %d %v", qr.Status, qr.Header)
	}
	// Not yet on: the password alone still signs in.
	if info, _ := e.accounts.SecondFactors(t.Context(), "bob"); info.TOTP {
		t.Fatal("TOTP on before the confirming code")
	}
	csrf = b.csrf()
	r = b.postForm("/auth/account/totp/confirm", url.Values{"csrf_token": {csrf}, "code": {"000000"}}, nav...)
	if r.Status != http.StatusBadRequest || !strings.Contains(r.Text, "not right") {
		t.Fatalf("wrong confirming code: %d %s", r.Status, r.Text)
	}
	r = b.postForm("/auth/account/totp/confirm", url.Values{"csrf_token": {csrf}, "code": {e.totpCode(secret)}}, nav...)
	if r.Status != http.StatusOK || strings.Count(r.Text, "<li><code>") != accounts.RecoveryCodeCount || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("confirmation: %d %s", r.Status, r.Text)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "bob"); !info.TOTP {
		t.Fatal("TOTP not on after the confirming code")
	}
	// The enrolment is finished: its page and QR code are gone.
	if r := b.get("/auth/account/totp/qr"); r.Status != http.StatusNotFound {
		t.Errorf("QR code after the confirmation: %d", r.Status)
	}
	if page := b.get("/auth/account", nav...); !strings.Contains(page.Text, "On: signing in asks for a code") {
		t.Errorf("account page after enrolment: %s", page.Text)
	}
}

func TestTOTPEnrolmentRefusedWithoutKeyFile(t *testing.T) {
	e := newEnv(t)
	b := e.minted("bob")
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"}
	if page := b.get("/auth/account", nav...); !strings.Contains(page.Text, "Not available on this server") {
		t.Errorf("account page without a key file: %s", page.Text)
	}
	r := b.postForm("/auth/account/totp", url.Values{"csrf_token": {b.csrf()}}, nav...)
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Text, "--totp-keys-file") {
		t.Fatalf("enrolment without a key file: %d %s", r.Status, r.Text)
	}
	if rec, _ := e.users.Get(t.Context(), "bob"); rec.SecondFactor != "" {
		t.Error("a factor was stored without a key file")
	}
}
