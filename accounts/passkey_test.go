package accounts_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/internal/webauthntest"
)

const (
	testRPID   = "example.com"
	testOrigin = "https://login.example.com"
)

// softAuthenticator drives the relying party through real ceremonies.
type softAuthenticator = webauthntest.Authenticator

func newSoftAuthenticator(t *testing.T) *softAuthenticator {
	t.Helper()
	return webauthntest.New(t, testRPID, testOrigin)
}

var b64 = base64.RawURLEncoding

func newPasskeyFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixture(t, memaccounts.New(), func(c *accounts.Config) {
		c.Passkeys = accounts.PasskeyConfig{RPID: testRPID, Origins: []string{testOrigin}}
	})
}

// register adds name (if new) and registers a's credential for it.
func (f *fixture) register(t *testing.T, name string, a *softAuthenticator) accounts.PasskeyInfo {
	t.Helper()
	if _, err := f.store.Get(t.Context(), name); errors.Is(err, accounts.ErrNoSuchUser) {
		f.mustAdd(t, name, totpPassword)
	}
	c, err := f.svc.BeginPasskeyRegistration(t.Context(), name)
	if err != nil {
		t.Fatalf("BeginPasskeyRegistration: %v", err)
	}
	info, err := f.svc.FinishPasskeyRegistration(t.Context(), name, "laptop", c.State, a.Create(c.Options))
	if err != nil {
		t.Fatalf("FinishPasskeyRegistration: %v", err)
	}
	return info
}

// signIn runs a discoverable sign-in with a at sign count count.
func (f *fixture) signIn(t *testing.T, a *softAuthenticator, count uint32) (accounts.PasskeyLoginResult, error) {
	t.Helper()
	c, err := f.svc.BeginPasskeyLogin()
	if err != nil {
		t.Fatalf("BeginPasskeyLogin: %v", err)
	}
	if strings.Contains(string(c.Options), `"allowCredentials"`) || !strings.Contains(string(c.Options), `"userVerification":"required"`) {
		t.Errorf("sign-in options: %s", c.Options)
	}
	return f.svc.PasskeyLogin(t.Context(), c.State, a.Get(c.Options, count))
}

func TestPasskeyRegisterAndSignIn(t *testing.T) {
	f := newPasskeyFixture(t)
	a := newSoftAuthenticator(t)
	info := f.register(t, "Alice", a)
	if info.Name != "laptop" || info.ID != b64.EncodeToString(a.ID) || info.Synced {
		t.Errorf("registered %+v", info)
	}
	if string(a.Handle) != "alice" {
		t.Errorf("user handle %q, want the folded name", a.Handle)
	}
	rec, _ := f.store.Get(t.Context(), "alice")
	if strings.Contains(rec.Passkeys, "private") || rec.Passkeys == "" {
		t.Errorf("stored passkeys: %s", rec.Passkeys)
	}
	res, err := f.signIn(t, a, 1)
	if err != nil {
		t.Fatalf("PasskeyLogin: %v", err)
	}
	if res.User.Name != "Alice" || !res.UserVerified || res.Synced || res.Passkey.SignCount != 1 || res.Passkey.LastUsed.IsZero() {
		t.Errorf("PasskeyLogin = %+v", res)
	}
	list, err := f.svc.Passkeys(t.Context(), "alice")
	if err != nil || len(list) != 1 || list[0].SignCount != 1 {
		t.Errorf("Passkeys = %+v, %v", list, err)
	}

	// Without user verification (presence only) it is one factor
	// standing in for two: refused.
	a.Verify = false
	if res, err := f.signIn(t, a, 2); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("PasskeyLogin without UV = %+v, %v; want ErrInvalidPasskey", res, err)
	}
	a.Verify = true
	if _, err := f.signIn(t, a, 3); err != nil {
		t.Errorf("PasskeyLogin with UV after a refusal: %v", err)
	}
}

// TestPasskeySignCountBackwardsRefused: a count at or below the stored
// one is a cloned credential's mark; it is refused and the stored count
// stays.
func TestPasskeySignCountBackwardsRefused(t *testing.T) {
	f := newPasskeyFixture(t)
	a := newSoftAuthenticator(t)
	f.register(t, "alice", a)
	if _, err := f.signIn(t, a, 5); err != nil {
		t.Fatalf("PasskeyLogin at 5: %v", err)
	}
	for _, count := range []uint32{3, 5} {
		_, err := f.signIn(t, a, count)
		if !errors.Is(err, accounts.ErrSignCountWentBack) || !errors.Is(err, accounts.ErrInvalidPasskey) {
			t.Errorf("PasskeyLogin at %d after 5: %v, want ErrSignCountWentBack", count, err)
		}
	}
	if list, _ := f.svc.Passkeys(t.Context(), "alice"); len(list) != 1 || list[0].SignCount != 5 {
		t.Errorf("stored count after refusals: %+v, want 5", list)
	}
	if _, err := f.signIn(t, a, 6); err != nil {
		t.Errorf("PasskeyLogin at 6: %v", err)
	}
}

func TestPasskeyRemovedNoLongerSignsIn(t *testing.T) {
	f := newPasskeyFixture(t)
	a, b := newSoftAuthenticator(t), newSoftAuthenticator(t)
	info := f.register(t, "alice", a)
	f.register(t, "alice", b)
	if err := f.svc.RemovePasskey(t.Context(), "alice", info.ID); err != nil {
		t.Fatalf("RemovePasskey: %v", err)
	}
	if _, err := f.signIn(t, a, 1); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("removed passkey: %v, want ErrInvalidPasskey", err)
	}
	if _, err := f.signIn(t, b, 1); err != nil {
		t.Errorf("the other passkey: %v", err)
	}
	if err := f.svc.RemovePasskey(t.Context(), "alice", info.ID); !errors.Is(err, accounts.ErrNoSuchPasskey) {
		t.Errorf("RemovePasskey again: %v, want ErrNoSuchPasskey", err)
	}
}

func TestPasskeyRefusals(t *testing.T) {
	f := newPasskeyFixture(t)
	a := newSoftAuthenticator(t)
	f.register(t, "alice", a)
	f.mustAdd(t, "bob", totpPassword)

	// The backup-eligible flag never changes for a credential.
	a.Backup = true
	if _, err := f.signIn(t, a, 1); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("backup-eligible flag changed: %v, want ErrInvalidPasskey", err)
	}
	a.Backup = false

	// Another origin.
	a.Origin = "https://evil.example.net"
	if _, err := f.signIn(t, a, 2); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("foreign origin: %v, want ErrInvalidPasskey", err)
	}
	a.Origin = testOrigin

	// An answer to another challenge.
	c1, _ := f.svc.BeginPasskeyLogin()
	c2, _ := f.svc.BeginPasskeyLogin()
	if _, err := f.svc.PasskeyLogin(t.Context(), c2.State, a.Get(c1.Options, 3)); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("answer to another challenge: %v, want ErrInvalidPasskey", err)
	}

	// A user handle naming another account (bob has no such passkey).
	a.Handle = []byte("bob")
	if _, err := f.signIn(t, a, 4); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("another account's handle: %v, want ErrInvalidPasskey", err)
	}
	a.Handle = []byte("alice")

	// A disabled account.
	if err := f.svc.Disable(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.signIn(t, a, 5); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("disabled account: %v, want ErrInvalidPasskey", err)
	}

	// A key that does not verify its user is not registered.
	weak := newSoftAuthenticator(t)
	weak.Verify = false
	if c, err := f.svc.BeginPasskeyRegistration(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	} else if _, err := f.svc.FinishPasskeyRegistration(t.Context(), "bob", "key", c.State, weak.Create(c.Options)); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("registration without user verification: %v, want ErrInvalidPasskey", err)
	}

	// A registration ceremony is its account's only.
	c, err := f.svc.BeginPasskeyRegistration(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.FinishPasskeyRegistration(t.Context(), "alice", "x", c.State, newSoftAuthenticator(t).Create(c.Options)); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("another account's ceremony: %v, want ErrInvalidPasskey", err)
	}
	if _, err := f.svc.FinishPasskeyRegistration(t.Context(), "bob", "", c.State, newSoftAuthenticator(t).Create(c.Options)); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("no name: %v, want ErrInvalidInput", err)
	}
}

func TestPasskeysOffAndConfig(t *testing.T) {
	f := newFixture(t, memaccounts.New())
	if f.svc.PasskeysEnabled() {
		t.Error("passkeys on without a relying party")
	}
	if _, err := f.svc.BeginPasskeyLogin(); !errors.Is(err, accounts.ErrPasskeysOff) {
		t.Errorf("BeginPasskeyLogin without a relying party: %v", err)
	}
	for _, bad := range []accounts.PasskeyConfig{
		{RPID: "example.com"},
		{Origins: []string{"https://example.com"}},
		{RPID: "example.com", Origins: []string{"http://example.com"}},
		{RPID: "example.com", Origins: []string{"https://example.net"}},
		{RPID: "example.com", Origins: []string{"https://evilexample.com"}},
		{RPID: "example.com", Origins: []string{"https://example.com/path"}},
		{RPID: "https://example.com", Origins: []string{"https://example.com"}},
	} {
		if err := bad.Check(); !errors.Is(err, accounts.ErrInvalidInput) {
			t.Errorf("Check(%+v) = %v, want ErrInvalidInput", bad, err)
		}
		f := newFixture(t, memaccounts.New(), func(c *accounts.Config) { c.Passkeys = bad })
		if _, err := f.svc.BeginPasskeyLogin(); err == nil {
			t.Errorf("BeginPasskeyLogin with %+v succeeded", bad)
		}
	}
	for _, good := range []accounts.PasskeyConfig{
		{},
		{RPID: "example.com", Origins: []string{"https://example.com", "https://login.example.com:8443"}},
		{RPID: "localhost", Origins: []string{"http://localhost:8080"}},
	} {
		if err := good.Check(); err != nil {
			t.Errorf("Check(%+v) = %v", good, err)
		}
	}
}

// secondFactor runs the passkey step after name's password, with a at
// sign count count.
func (f *fixture) secondFactor(t *testing.T, name string, a *softAuthenticator, count uint32, factor string) (accounts.PasskeyLoginResult, error) {
	t.Helper()
	c, err := f.svc.BeginPasskeySecondFactor(t.Context(), name)
	if err != nil {
		t.Fatalf("BeginPasskeySecondFactor: %v", err)
	}
	if !strings.Contains(string(c.Options), `"allowCredentials"`) || !strings.Contains(string(c.Options), `"userVerification":"preferred"`) {
		t.Errorf("second-factor options: %s", c.Options)
	}
	u, err := f.svc.Get(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return f.svc.VerifyPasskeySecondFactor(t.Context(), accounts.PasskeySecondFactorAttempt{
		Name: name, State: c.State, Response: a.Get(c.Options, count), ClientIP: "192.0.2.1",
		PasswordChangedAt: u.PasswordChangedAt, Factor: factor,
	})
}

// TestPasskeyAsSecondFactor: after the password, one of the account's
// own passkeys completes the login, with or without user verification
// (noted in the result); the sign count must grow; a change of the
// account since the password, another account's ceremony, and an account
// without passkeys are refused.
func TestPasskeyAsSecondFactor(t *testing.T) {
	f := newPasskeyFixture(t)
	a := newSoftAuthenticator(t)
	f.register(t, "alice", a)
	f.mustAdd(t, "bob", totpPassword)

	res, err := f.secondFactor(t, "alice", a, 1, "")
	if err != nil {
		t.Fatalf("VerifyPasskeySecondFactor: %v", err)
	}
	if res.User.Name != "alice" || !res.UserVerified || len(res.Devices) == 0 || res.Passkey.SignCount != 1 {
		t.Errorf("result %+v", res)
	}
	a.Verify = false // presence only: with the password, still two factors
	if res, err := f.secondFactor(t, "alice", a, 2, ""); err != nil || res.UserVerified {
		t.Errorf("presence only: %+v, %v", res, err)
	}
	a.Verify = true
	if _, err := f.secondFactor(t, "alice", a, 2, ""); !errors.Is(err, accounts.ErrSignCountWentBack) {
		t.Errorf("count not above 2: %v, want ErrSignCountWentBack", err)
	}
	if _, err := f.secondFactor(t, "alice", a, 3, "other-factor"); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Errorf("factor changed since the password: %v, want ErrInvalidCredentials", err)
	}

	// The password changed between the two steps.
	c, _ := f.svc.BeginPasskeySecondFactor(t.Context(), "alice")
	before, _ := f.svc.Get(t.Context(), "alice")
	if err := f.svc.SetPassword(t.Context(), "alice", "another correct horse battery"); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.VerifyPasskeySecondFactor(t.Context(), accounts.PasskeySecondFactorAttempt{
		Name: "alice", State: c.State, Response: a.Get(c.Options, 4), PasswordChangedAt: before.PasswordChangedAt,
	})
	if !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Errorf("password changed since: %v, want ErrInvalidCredentials", err)
	}

	// alice's ceremony cannot finish bob's login.
	c, _ = f.svc.BeginPasskeySecondFactor(t.Context(), "alice")
	bob, _ := f.svc.Get(t.Context(), "bob")
	_, err = f.svc.VerifyPasskeySecondFactor(t.Context(), accounts.PasskeySecondFactorAttempt{
		Name: "bob", State: c.State, Response: a.Get(c.Options, 5), PasswordChangedAt: bob.PasswordChangedAt,
	})
	if !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("another account's ceremony: %v, want ErrInvalidPasskey", err)
	}
	if _, err := f.svc.BeginPasskeySecondFactor(t.Context(), "bob"); !errors.Is(err, accounts.ErrNoSuchPasskey) {
		t.Errorf("bob has no passkey: %v, want ErrNoSuchPasskey", err)
	}
}

// TestResetFactorsRemovesPasskeysToo: the reset removes the TOTP factor,
// its recovery codes and every passkey at once; the passkeys no longer
// sign in; a second reset finds nothing.
func TestResetFactorsRemovesPasskeysToo(t *testing.T) {
	f := newPasskeyFixture(t)
	a, b := newSoftAuthenticator(t), newSoftAuthenticator(t)
	f.register(t, "alice", a)
	f.register(t, "alice", b)
	got, err := f.svc.ResetFactors(t.Context(), "ALICE")
	if err != nil || got.TOTP || got.Passkeys != 2 || !got.Any() {
		t.Fatalf("ResetFactors = %+v, %v; want 2 passkeys", got, err)
	}
	if list, _ := f.svc.Passkeys(t.Context(), "alice"); len(list) != 0 {
		t.Errorf("passkeys after the reset: %+v", list)
	}
	if _, err := f.signIn(t, a, 1); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("a passkey after the reset: %v, want ErrInvalidPasskey", err)
	}
	if got, err := f.svc.ResetFactors(t.Context(), "alice"); err != nil || got.Any() {
		t.Errorf("second ResetFactors = %+v, %v; want nothing", got, err)
	}
	if _, err := f.svc.ResetFactors(t.Context(), "nobody"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("ResetFactors of nobody: %v", err)
	}
}

// FuzzPasskeyAnswer sends hostile bytes as the authenticator's answer to
// a fresh sign-in ceremony, alone and after the password: nothing made
// before the ceremony's challenge existed can be accepted, every refusal
// is ErrInvalidPasskey, and the stored passkey is left as it was.
func FuzzPasskeyAnswer(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA","userHandle":"YWxpY2U"}}`))
	f.Add([]byte(`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"eyJ0eXBlIjoid2ViYXV0aG4uZ2V0IiwiY2hhbGxlbmdlIjoiQUFBQSIsIm9yaWdpbiI6Imh0dHBzOi8vbG9naW4uZXhhbXBsZS5jb20ifQ","authenticatorData":"o3mm9u6vuaVeN4wRgDTidR5oL6ufLTCrE9ISVYbOGUMFAAAAAQ","signature":"MEUCIQ","userHandle":"YWxpY2U"}}`))
	f.Fuzz(func(t *testing.T, answer []byte) {
		fx := newPasskeyFixture(t)
		a := newSoftAuthenticator(t)
		fx.register(t, "alice", a)
		before, _ := fx.svc.Passkeys(t.Context(), "alice")

		c, err := fx.svc.BeginPasskeyLogin()
		if err != nil {
			t.Fatal(err)
		}
		if res, err := fx.svc.PasskeyLogin(t.Context(), c.State, answer); !errors.Is(err, accounts.ErrInvalidPasskey) {
			t.Fatalf("PasskeyLogin(%q) = %+v, %v; want ErrInvalidPasskey", answer, res, err)
		}
		c, err = fx.svc.BeginPasskeySecondFactor(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		u, _ := fx.svc.Get(t.Context(), "alice")
		res, err := fx.svc.VerifyPasskeySecondFactor(t.Context(), accounts.PasskeySecondFactorAttempt{
			Name: "alice", State: c.State, Response: answer, ClientIP: "192.0.2.1", PasswordChangedAt: u.PasswordChangedAt,
		})
		if !errors.Is(err, accounts.ErrInvalidPasskey) {
			var throttled *accounts.ThrottledError
			if !errors.As(err, &throttled) {
				t.Fatalf("VerifyPasskeySecondFactor(%q) = %+v, %v; want ErrInvalidPasskey", answer, res, err)
			}
		}
		if after, _ := fx.svc.Passkeys(t.Context(), "alice"); len(after) != 1 || after[0] != before[0] {
			t.Fatalf("the stored passkey changed: %+v, was %+v", after, before)
		}
	})
}

// TestPasskeyMakesTheSecondFactorRequired: once an account has a passkey,
// its password alone is not a sign-in: Login answers
// ErrSecondFactorRequired naming what the account has (a passkey, no
// app, no recovery code), so a phished password does not defeat the
// passkey. A re-entry of the password by a signed-in user is not asked
// again; the factor reset removes the requirement with the passkeys.
func TestPasskeyMakesTheSecondFactorRequired(t *testing.T) {
	f := newPasskeyFixture(t)
	f.register(t, "alice", newSoftAuthenticator(t))
	f.mustAdd(t, "bob", totpPassword)

	res, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: totpPassword, ClientIP: "192.0.2.1"})
	var need *accounts.SecondFactorRequiredError
	if !errors.As(err, &need) {
		t.Fatalf("password alone of a passkey account = %+v, %v; want ErrSecondFactorRequired", res, err)
	}
	want := accounts.SignInFactors{Passkeys: 1}
	if need.User.Name != "alice" || need.Factor != "" || need.Factors != want {
		t.Errorf("SecondFactorRequiredError = %+v, want factors %+v", need, want)
	}
	if got, err := f.svc.SignInFactors(t.Context(), "ALICE"); err != nil || got != want || !got.Any() {
		t.Errorf("SignInFactors = %+v, %v", got, err)
	}
	if _, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: totpPassword, Reauthentication: true}); err != nil {
		t.Errorf("password re-entry of a signed-in user: %v", err)
	}
	if _, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "bob", Password: totpPassword}); err != nil {
		t.Errorf("bob has no factor: %v", err)
	}
	if got, err := f.svc.SignInFactors(t.Context(), "bob"); err != nil || got.Any() {
		t.Errorf("bob's SignInFactors = %+v, %v", got, err)
	}

	// The admin's reset is the way back for a user who lost every
	// passkey: the password alone signs in again.
	if _, err := f.svc.ResetFactors(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: totpPassword}); err != nil {
		t.Errorf("after the factor reset: %v", err)
	}
}

// TestStoredPasskeysCountOnlyWhenPasskeysAreOn: with no relying party
// configured, stored passkeys cannot be used, so they do not hold the
// account at a step it cannot pass.
func TestStoredPasskeysCountOnlyWhenPasskeysAreOn(t *testing.T) {
	f := newPasskeyFixture(t)
	f.register(t, "alice", newSoftAuthenticator(t))
	off := newFixture(t, f.store)
	if _, err := off.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: totpPassword}); err != nil {
		t.Errorf("passkeys off: %v", err)
	}
	if got, err := off.svc.SignInFactors(t.Context(), "alice"); err != nil || got.Any() {
		t.Errorf("passkeys off: SignInFactors = %+v, %v", got, err)
	}
}

// TestPasskeySignInName: the name to pin before a discoverable answer is
// checked is the stored name of the account its user handle names (the
// handle is the folded name); a handle that names no account is refused
// as the check would refuse it.
func TestPasskeySignInName(t *testing.T) {
	f := newPasskeyFixture(t)
	a := newSoftAuthenticator(t)
	f.register(t, "Alice", a)
	c, err := f.svc.BeginPasskeyLogin()
	if err != nil {
		t.Fatal(err)
	}
	answer := a.Get(c.Options, 1)
	if name, err := f.svc.PasskeySignInName(t.Context(), answer); err != nil || name != "Alice" {
		t.Errorf("PasskeySignInName = %q, %v; want the stored name Alice", name, err)
	}
	res, err := f.svc.PasskeyLogin(t.Context(), c.State, answer)
	if err != nil || res.User.Name != "Alice" {
		t.Errorf("PasskeyLogin = %q, %v", res.User.Name, err)
	}
	for _, handle := range []string{"nobody", "", "not a name\x00"} {
		a.Handle = []byte(handle)
		if _, err := f.svc.PasskeySignInName(t.Context(), a.Get(c.Options, 2)); !errors.Is(err, accounts.ErrInvalidPasskey) {
			t.Errorf("handle %q: %v, want ErrInvalidPasskey", handle, err)
		}
	}
	if _, err := f.svc.PasskeySignInName(t.Context(), []byte("{")); !errors.Is(err, accounts.ErrInvalidPasskey) {
		t.Errorf("unreadable answer: %v, want ErrInvalidPasskey", err)
	}
}
