package accounts_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/internal/seal"
)

const totpPassword = "correct horse battery staple"

// newTOTPFixture is a fixture whose Service seals TOTP secrets.
func newTOTPFixture(t *testing.T, edit ...func(*accounts.Config)) *fixture {
	t.Helper()
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, memaccounts.New(), append([]func(*accounts.Config){func(c *accounts.Config) { c.Sealer = keys }}, edit...)...)
}

// enrol adds name with a confirmed TOTP factor and returns its secret and
// recovery codes.
func (f *fixture) enrol(t *testing.T, name string) (secret string, recovery []string) {
	t.Helper()
	f.mustAdd(t, name, totpPassword)
	e, err := f.svc.BeginTOTP(t.Context(), name)
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	recovery, err = f.svc.ConfirmTOTP(t.Context(), name, e.Sealed, f.code(t, e.Secret, 0))
	if err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	// The confirming code's step is used: move past it.
	f.clock.Advance(10 * time.Minute)
	return e.Secret, recovery
}

// code is the TOTP code of secret steps time steps from the clock's now.
func (f *fixture) code(t *testing.T, secret string, steps int) string {
	t.Helper()
	c, err := accounts.TOTPCode(secret, f.clock.Now().Add(time.Duration(steps)*accounts.TOTPPeriod))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// password passes the first factor and returns what the second needs.
func (f *fixture) password(t *testing.T, name, ip string, devices ...string) accounts.SecondFactorAttempt {
	t.Helper()
	_, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: name, Password: totpPassword, ClientIP: ip, Devices: devices})
	var need *accounts.SecondFactorRequiredError
	if !errors.As(err, &need) {
		t.Fatalf("Login with the password of a TOTP account: %v, want SecondFactorRequiredError", err)
	}
	return accounts.SecondFactorAttempt{Name: name, ClientIP: ip, Devices: devices, PasswordChangedAt: need.User.PasswordChangedAt, Factor: need.Factor}
}

func (f *fixture) second(t *testing.T, a accounts.SecondFactorAttempt, code string) (accounts.LoginResult, error) {
	t.Helper()
	a.Code = code
	return f.svc.VerifySecondFactor(t.Context(), a)
}

func TestTOTPEnrolmentNeedsAConfirmingCode(t *testing.T) {
	f := newTOTPFixture(t)
	f.mustAdd(t, "alice", totpPassword)
	e, err := f.svc.BeginTOTP(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.URI, "otpauth://totp/") || !strings.Contains(e.URI, "secret="+e.Secret) || len(e.Secret) < 32 {
		t.Fatalf("enrolment = %q, %q", e.URI, e.Secret)
	}
	if img, err := e.QR(256); err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("QR: %v", err)
	}
	// Nothing is stored until a code confirms it.
	if rec, _ := f.store.Get(t.Context(), "alice"); rec.SecondFactor != "" {
		t.Fatalf("factor stored before confirmation: %q", rec.SecondFactor)
	}
	if _, err := f.svc.ConfirmTOTP(t.Context(), "alice", e.Sealed, "000000"); !errors.Is(err, accounts.ErrInvalidCode) {
		t.Fatalf("ConfirmTOTP with a wrong code: %v, want ErrInvalidCode", err)
	}
	if _, err := f.svc.Authenticate(t.Context(), "alice", totpPassword, "192.0.2.1"); err != nil {
		t.Fatalf("the password alone after a refused confirmation: %v", err)
	}
	codes, err := f.svc.ConfirmTOTP(t.Context(), "alice", e.Sealed, f.code(t, e.Secret, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != accounts.RecoveryCodeCount {
		t.Fatalf("%d recovery codes, want %d", len(codes), accounts.RecoveryCodeCount)
	}
	rec, _ := f.store.Get(t.Context(), "alice")
	// Sealed and hashed: neither the secret nor a code is stored.
	for _, secret := range append([]string{e.Secret, strings.ToLower(e.Secret)}, codes...) {
		if strings.Contains(rec.SecondFactor, secret) || strings.Contains(rec.SecondFactor, strings.ReplaceAll(secret, "-", "")) {
			t.Fatalf("stored factor %q holds %q in clear", rec.SecondFactor, secret)
		}
	}
	info, err := f.svc.SecondFactors(t.Context(), "alice")
	if err != nil || !info.TOTP || info.RecoveryCodesLeft != 10 || !info.Since.Equal(f.clock.Now().Truncate(time.Second)) {
		t.Fatalf("SecondFactors = %+v, %v", info, err)
	}
	if _, err := f.svc.BeginTOTP(t.Context(), "alice"); !errors.Is(err, accounts.ErrAlreadyEnrolled) {
		t.Errorf("BeginTOTP with a factor: %v, want ErrAlreadyEnrolled", err)
	}
	if _, err := f.svc.ConfirmTOTP(t.Context(), "alice", e.Sealed, f.code(t, e.Secret, 1)); !errors.Is(err, accounts.ErrAlreadyEnrolled) {
		t.Errorf("ConfirmTOTP twice: %v, want ErrAlreadyEnrolled", err)
	}
}

func TestTOTPEnrolmentExpiresAndIsBoundToTheAccount(t *testing.T) {
	f := newTOTPFixture(t)
	f.mustAdd(t, "alice", totpPassword)
	f.mustAdd(t, "mallory", totpPassword)
	e, err := f.svc.BeginTOTP(t.Context(), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ConfirmTOTP(t.Context(), "alice", e.Sealed, f.code(t, e.Secret, 0)); !errors.Is(err, accounts.ErrEnrolmentExpired) {
		t.Errorf("another account's enrolment: %v, want ErrEnrolmentExpired", err)
	}
	f.clock.Advance(accounts.TOTPEnrolmentLifetime)
	if _, err := f.svc.ConfirmTOTP(t.Context(), "mallory", e.Sealed, f.code(t, e.Secret, 0)); !errors.Is(err, accounts.ErrEnrolmentExpired) {
		t.Errorf("an enrolment past its lifetime: %v, want ErrEnrolmentExpired", err)
	}
}

func TestTOTPWithoutSealerRefused(t *testing.T) {
	f := newFixture(t, memaccounts.New())
	f.mustAdd(t, "alice", totpPassword)
	if _, err := f.svc.BeginTOTP(t.Context(), "alice"); !errors.Is(err, accounts.ErrNoSealer) {
		t.Errorf("BeginTOTP without a sealer: %v, want ErrNoSealer", err)
	}
}

func TestTOTPLoginNeedsTheCode(t *testing.T) {
	f := newTOTPFixture(t)
	secret, _ := f.enrol(t, "alice")
	a := f.password(t, "alice", "192.0.2.1")
	// A password re-entry of a signed-in user (step-up) is not asked for it.
	if _, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: totpPassword, Reauthentication: true}); err != nil {
		t.Fatalf("reauthentication: %v", err)
	}
	// A wrong password is still just a wrong password.
	if _, err := f.svc.Authenticate(t.Context(), "alice", "wrong password here", "192.0.2.1"); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	res, err := f.second(t, a, f.code(t, secret, 0))
	if err != nil {
		t.Fatalf("VerifySecondFactor: %v", err)
	}
	if res.User.Name != "alice" || res.SecondFactor != "totp" || len(res.Devices) != 1 {
		t.Errorf("result = %+v", res)
	}
}

func TestTOTPOneStepOfDriftEachWay(t *testing.T) {
	for _, tc := range []struct {
		steps int
		ok    bool
	}{{-2, false}, {-1, true}, {0, true}, {1, true}, {2, false}} {
		f := newTOTPFixture(t)
		secret, _ := f.enrol(t, "alice")
		_, err := f.second(t, f.password(t, "alice", "192.0.2.1"), f.code(t, secret, tc.steps))
		if got := err == nil; got != tc.ok {
			t.Errorf("code %+d steps off: %v, want accepted %v", tc.steps, err, tc.ok)
		}
		if !tc.ok && !errors.Is(err, accounts.ErrInvalidCode) {
			t.Errorf("code %+d steps off: %v, want ErrInvalidCode", tc.steps, err)
		}
	}
}

func TestTOTPCodeReplayRefused(t *testing.T) {
	roomy := accounts.ThrottleConfig{FreeFailures: 100}
	f := newTOTPFixture(t, func(c *accounts.Config) { c.AccountThrottle, c.IPThrottle = roomy, roomy })
	secret, _ := f.enrol(t, "alice")
	code := f.code(t, secret, 0)
	if _, err := f.second(t, f.password(t, "alice", "192.0.2.1"), code); err != nil {
		t.Fatal(err)
	}
	if _, err := f.second(t, f.password(t, "alice", "192.0.2.1"), code); !errors.Is(err, accounts.ErrInvalidCode) {
		t.Errorf("the same code again: %v, want ErrInvalidCode", err)
	}
	// Nor an earlier step's code, still within the window.
	if _, err := f.second(t, f.password(t, "alice", "192.0.2.1"), f.code(t, secret, -1)); !errors.Is(err, accounts.ErrInvalidCode) {
		t.Errorf("the previous step's code after the current one: %v, want ErrInvalidCode", err)
	}
	// The next step's is new.
	if _, err := f.second(t, f.password(t, "alice", "192.0.2.1"), f.code(t, secret, 1)); err != nil {
		t.Errorf("the next step's code: %v", err)
	}
}

// TestTOTPConcurrentSameCode races logins with one code: the stored
// factor's compare-and-swap lets exactly one through.
func TestTOTPConcurrentSameCode(t *testing.T) {
	// A budget large enough for every racer: this is about the code.
	roomy := accounts.ThrottleConfig{FreeFailures: 100}
	f := newTOTPFixture(t, func(c *accounts.Config) { c.AccountThrottle, c.IPThrottle = roomy, roomy })
	secret, _ := f.enrol(t, "alice")
	const n = 8
	attempts := make([]accounts.SecondFactorAttempt, n)
	for i := range attempts {
		attempts[i] = f.password(t, "alice", "192.0.2.1")
	}
	code := f.code(t, secret, 0)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = f.second(t, attempts[i], code) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, accounts.ErrInvalidCode):
			t.Errorf("racing login: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d logins with one code succeeded, want 1", ok)
	}
}

func TestRecoveryCodeUsedOnce(t *testing.T) {
	f := newTOTPFixture(t)
	_, codes := f.enrol(t, "alice")
	// Typed in capitals without dashes: the same code.
	typed := strings.ToUpper(strings.ReplaceAll(codes[3], "-", ""))
	res, err := f.second(t, f.password(t, "alice", "192.0.2.1"), typed)
	if err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	if res.SecondFactor != "recovery" || res.RecoveryCodesLeft != 9 {
		t.Errorf("result = %q, %d left; want recovery, 9", res.SecondFactor, res.RecoveryCodesLeft)
	}
	if _, err := f.second(t, f.password(t, "alice", "192.0.2.1"), codes[3]); !errors.Is(err, accounts.ErrInvalidCode) {
		t.Errorf("a recovery code again: %v, want ErrInvalidCode", err)
	}
	if _, err := f.second(t, f.password(t, "alice", "192.0.2.1"), codes[4]); err != nil {
		t.Errorf("another recovery code: %v", err)
	}
	if info, _ := f.svc.SecondFactors(t.Context(), "alice"); info.RecoveryCodesLeft != 8 {
		t.Errorf("%d recovery codes left, want 8", info.RecoveryCodesLeft)
	}
}

// TestWrongCodesThrottledKnownDeviceNotLockedOut: someone who has the
// password guesses codes from their own browser until throttled; the
// user's known browser is throttled on its own failures only, and signs
// in.
func TestWrongCodesThrottledKnownDeviceNotLockedOut(t *testing.T) {
	f := newTOTPFixture(t)
	secret, _ := f.enrol(t, "alice")
	res, err := f.second(t, f.password(t, "alice", "192.0.2.1"), f.code(t, secret, 0))
	if err != nil {
		t.Fatal(err)
	}
	known := res.Devices
	f.clock.Advance(time.Minute)

	var throttled *accounts.ThrottledError
	guesses := 0
	for ; guesses < 20; guesses++ {
		a := f.password(t, "alice", "198.51.100.7")
		_, err := f.second(t, a, "123456")
		if errors.As(err, &throttled) {
			break
		}
		if !errors.Is(err, accounts.ErrInvalidCode) {
			t.Fatalf("guess %d: %v", guesses, err)
		}
	}
	// Each round charges the password and the code: the attacker's
	// budget (5 free failures) is spent within three rounds, by the codes
	// they get wrong.
	if throttled == nil || guesses > 3 {
		t.Fatalf("after %d wrong codes: not throttled (%v)", guesses, throttled)
	}
	// The user's browser is not.
	a := f.password(t, "alice", "192.0.2.1", known...)
	if _, err := f.second(t, a, f.code(t, secret, 0)); err != nil {
		t.Fatalf("the known device while a stranger is throttled: %v", err)
	}
}

func TestSecondFactorRefusedAfterAccountChange(t *testing.T) {
	f := newTOTPFixture(t)
	secret, _ := f.enrol(t, "alice")
	a := f.password(t, "alice", "192.0.2.1")
	f.clock.Advance(time.Second)
	if err := f.svc.SetPassword(t.Context(), "alice", "a whole new passphrase"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.second(t, a, f.code(t, secret, 0)); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Errorf("code after a password change: %v, want ErrInvalidCredentials", err)
	}
}

func TestResetSecondFactor(t *testing.T) {
	f := newTOTPFixture(t)
	f.enrol(t, "alice")
	if had, err := f.svc.ResetSecondFactor(t.Context(), "ALICE"); err != nil || !had {
		t.Fatalf("ResetSecondFactor = %v, %v", had, err)
	}
	if info, err := f.svc.SecondFactors(t.Context(), "alice"); err != nil || info.TOTP {
		t.Fatalf("SecondFactors after reset = %+v, %v", info, err)
	}
	if _, err := f.svc.Authenticate(t.Context(), "alice", totpPassword, "192.0.2.1"); err != nil {
		t.Errorf("password alone after reset: %v", err)
	}
	if had, err := f.svc.ResetSecondFactor(t.Context(), "alice"); err != nil || had {
		t.Errorf("second reset = %v, %v", had, err)
	}
}

// TestSecondFactorAttemptEndsWithAReset: a sign-in waiting for its code
// when an administrator resets the factor cannot be finished, neither at
// once nor with the code of a factor enrolled again right after: the
// attempt is bound to the factor its password was checked against.
func TestSecondFactorAttemptEndsWithAReset(t *testing.T) {
	f := newTOTPFixture(t)
	f.enrol(t, "alice")
	a := f.password(t, "alice", "192.0.2.1")
	if a.Factor == "" {
		t.Fatal("SecondFactorRequiredError names no factor")
	}
	if _, err := f.svc.ResetSecondFactor(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	e, err := f.svc.BeginTOTP(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ConfirmTOTP(t.Context(), "alice", e.Sealed, f.code(t, e.Secret, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.second(t, a, f.code(t, e.Secret, 1)); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Errorf("the new factor's code for an attempt begun before the reset: %v, want ErrInvalidCredentials", err)
	}
	// A fresh password check, against the new factor, succeeds.
	b := f.password(t, "alice", "192.0.2.1")
	if b.Factor == a.Factor {
		t.Error("two enrolments share a factor ID")
	}
	if _, err := f.second(t, b, f.code(t, e.Secret, 1)); err != nil {
		t.Errorf("the new factor after a new password check: %v", err)
	}
	// An attempt without the factor ID fails closed.
	c := f.password(t, "alice", "192.0.2.1")
	c.Factor = ""
	f.clock.Advance(accounts.TOTPPeriod)
	if _, err := f.second(t, c, f.code(t, e.Secret, 1)); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Errorf("an attempt naming no factor: %v, want ErrInvalidCredentials", err)
	}
}

// TestPasswordSetKeepsTheFactor: a password set by an administrator
// (there is no self-service reset) does not bypass the second factor:
// the new password still asks for the code.
func TestPasswordSetKeepsTheFactor(t *testing.T) {
	f := newTOTPFixture(t)
	f.enrol(t, "alice")
	const newPassword = "a new and long password for alice"
	if err := f.svc.SetPassword(t.Context(), "alice", newPassword); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: newPassword, ClientIP: "192.0.2.1"})
	if !errors.Is(err, accounts.ErrSecondFactorRequired) {
		t.Errorf("login with the password an administrator set: %v, want ErrSecondFactorRequired", err)
	}
}
