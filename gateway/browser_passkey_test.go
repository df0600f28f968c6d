package gateway_test

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// ceremonyTimeout bounds one WebAuthn ceremony in the browser, so that a
// ceremony that never settles fails its own step rather than the test's
// whole budget.
const ceremonyTimeout = 30 * time.Second

// newPasskeyServer starts a gateway whose relying party is localhost on
// the port it serves, over plain HTTP (localhost is a secure context).
func newPasskeyServer(t *testing.T, edit ...func(*accounts.Config)) (*env, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://localhost:" + strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")
	e := newEnvWithAccounts(t, func(c *accounts.Config) {
		c.Passkeys = accounts.PasskeyConfig{RPID: "localhost", Origins: []string{base}}
		for _, f := range edit {
			f(c)
		}
	}, func(c *gateway.Config) { c.TLS = false })
	srv := httptest.NewUnstartedServer(e.gw.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return e, base
}

// virtualAuthenticator gives the browser of ctx a platform
// authenticator (see browsertest.VirtualAuthenticator).
func virtualAuthenticator(t *testing.T, ctx context.Context) webauthn.AuthenticatorID {
	t.Helper()
	return browsertest.VirtualAuthenticator(t, ctx)
}

// ceremony runs one step that drives a WebAuthn ceremony, with its own
// timeout.
func ceremony(t *testing.T, ctx context.Context, name string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, ceremonyTimeout)
	defer cancel()
	browsertest.Step(t, cctx, name, actions...)
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// passkeySignIn clicks the login page's passkey button.
func passkeySignIn(t *testing.T, ctx context.Context, base, name string, waitFor string) {
	t.Helper()
	browsertest.Step(t, ctx, name+": login page",
		chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("passkey-signin")))
	ceremony(t, ctx, name,
		chromedp.Click(chromedp.ID("passkey-signin")),
		chromedp.WaitVisible(chromedp.ID(waitFor)))
}

// TestBrowserPasskeyFlow drives Chromium with a virtual authenticator
// through passkeys: sign in with the password, add a passkey on the
// account page, sign out, sign in with the passkey alone (no name
// typed); a second browser without the credential cannot; a removed
// passkey no longer signs in. It takes the docs' screenshots of the
// passkey sign-in and the account page's passkeys.
func TestBrowserPasskeyFlow(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	// With a key file, as the docs' screenshot of the account page shows.
	e, base := newPasskeyServer(t, func(c *accounts.Config) { c.Sealer = keys })
	ctx := browsertest.New(t)
	virtualAuthenticator(t, ctx)

	browsertest.Step(t, ctx, "password",
		chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("passkey-form")))
	browsertest.Step(t, ctx, "start registration",
		chromedp.SendKeys(chromedp.ID("passkey-name"), "test laptop"),
		chromedp.Click(chromedp.ID("passkey-add")),
		chromedp.WaitVisible(chromedp.ID("passkey-create")))
	screenshot(t, ctx, "passkey-register.png")
	ceremony(t, ctx, "create the passkey",
		chromedp.Click(chromedp.ID("passkey-create")),
		chromedp.WaitVisible(chromedp.ID("passkey-list")))
	if got := evalString(t, ctx, `Array.from(document.querySelectorAll("#passkey-list .passkey-name")).map(e => e.textContent).join(",")`); got != "test laptop" {
		t.Fatalf("passkeys listed: %q", got)
	}
	list, err := e.accounts.Passkeys(t.Context(), "bob")
	if err != nil || len(list) != 1 || list[0].Name != "test laptop" {
		t.Fatalf("stored passkeys: %+v, %v", list, err)
	}
	screenshot(t, ctx, "passkeys-account.png")

	browsertest.Step(t, ctx, "sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	browsertest.Step(t, ctx, "login page",
		chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("passkey-signin")))
	screenshot(t, ctx, "passkey-sign-in.png")
	passkeySignIn(t, ctx, base, "passkey sign-in", "passkey-list")
	if who := evalString(t, ctx, `document.getElementById("whoami").textContent`); who != "bob" {
		t.Errorf("signed in as %q, want bob", who)
	}
	if amr := e.amrOfLastSignIn(); amr != "hwk user pin mfa" {
		t.Errorf("amr = %q, want hwk user pin mfa", amr)
	}
	if evalString(t, ctx, `document.cookie`) != "" {
		t.Error("a cookie is readable by the page")
	}
	if list, _ := e.accounts.Passkeys(t.Context(), "bob"); len(list) != 1 || list[0].LastUsed.IsZero() || list[0].SignCount == 0 {
		t.Errorf("after the sign-in: %+v", list)
	}

	// Another browser, with an authenticator that has no credential for
	// this site: the ceremony fails at once, and nobody is signed in.
	other := browsertest.New(t)
	virtualAuthenticator(t, other)
	passkeySignIn(t, other, base, "other browser", "passkey-error")
	if msg := evalString(t, other, `document.getElementById("passkey-error").textContent`); !strings.Contains(msg, "No passkey was used") {
		t.Errorf("other browser's message: %q", msg)
	}
	if n := evalString(t, other, `String(document.querySelectorAll("#whoami").length)`); n != "0" {
		t.Error("the other browser is signed in")
	}

	// Removed, the passkey is refused by the server though the
	// authenticator still signs with it.
	browsertest.Step(t, ctx, "remove",
		chromedp.Click(chromedp.CSS("button.passkey-remove")),
		chromedp.WaitVisible(chromedp.ID("passkey-status")))
	if n := evalString(t, ctx, `document.getElementById("notice").textContent`); !strings.Contains(n, "removed") {
		t.Errorf("notice after removal: %q", n)
	}
	browsertest.Step(t, ctx, "sign out again", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	passkeySignIn(t, ctx, base, "removed passkey", "passkey-error")
	if msg := evalString(t, ctx, `document.getElementById("passkey-error").textContent`); !strings.Contains(msg, "not accepted") {
		t.Errorf("removed passkey's message: %q", msg)
	}
	if n := evalString(t, ctx, `String(document.querySelectorAll("#whoami").length)`); n != "0" {
		t.Error("signed in with a removed passkey")
	}
	refused := 0
	for _, ev := range e.logs.events("login") {
		if ev["outcome"] == "passkey_refused" {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d passkey_refused login lines, want 1", refused)
	}
}

// registerPasskey signs bob in with his password and adds a passkey
// named "test laptop" on the account page.
func registerPasskey(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	browsertest.Step(t, ctx, "password",
		chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("passkey-form")))
	browsertest.Step(t, ctx, "start registration",
		chromedp.SendKeys(chromedp.ID("passkey-name"), "test laptop"),
		chromedp.Click(chromedp.ID("passkey-add")),
		chromedp.WaitVisible(chromedp.ID("passkey-create")))
	ceremony(t, ctx, "create the passkey",
		chromedp.Click(chromedp.ID("passkey-create")),
		chromedp.WaitVisible(chromedp.ID("passkey-list")))
}

// TestBrowserPasskeyAsSecondFactor: bob registers a passkey, then turns
// on an authenticator app; signed out, his password leads to the
// second-factor page, which offers the passkey next to the code; the
// passkey finishes the sign-in (amr pwd hwk user pin mfa) without a
// code. A browser whose authenticator lacks the credential stays on the
// page, signed out. It takes the docs' screenshot of the second-factor
// page with the passkey.
func TestBrowserPasskeyAsSecondFactor(t *testing.T) {
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	e, base := newPasskeyServer(t, func(c *accounts.Config) { c.Sealer = keys })
	ctx := browsertest.New(t)
	virtualAuthenticator(t, ctx)
	registerPasskey(t, ctx, base)
	e.enrolTOTP("bob")

	typePassword := func(ctx context.Context, name string) { passwordToPasskeyStep(t, ctx, base, name) }
	browsertest.Step(t, ctx, "sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	typePassword(ctx, "password again")
	if n := evalString(t, ctx, `String(document.querySelectorAll("#second-factor-form").length)`); n != "1" {
		t.Error("the second-factor page lost its code form")
	}
	screenshot(t, ctx, "second-factor-passkey.png")
	passkeyStepSignsInBob(t, ctx, e, "passkey as second factor")

	// The right password in a browser without the credential: the
	// passkey step fails there, and no session starts.
	other := browsertest.New(t)
	virtualAuthenticator(t, other)
	typePassword(other, "other browser's password")
	ceremony(t, other, "other browser's passkey",
		chromedp.Click(chromedp.ID("passkey-second-factor")),
		chromedp.WaitVisible(chromedp.ID("passkey-error")))
	if msg := evalString(t, other, `document.getElementById("passkey-error").textContent`); !strings.Contains(msg, "No passkey was used") {
		t.Errorf("other browser's message: %q", msg)
	}
	if n := evalString(t, other, `String(document.querySelectorAll("#whoami").length)`); n != "0" {
		t.Error("the other browser is signed in")
	}
}

// passkeyStepSignsInBob clicks the passkey button of the step after the
// password and checks that bob is signed in with the password and the
// passkey.
func passkeyStepSignsInBob(t *testing.T, ctx context.Context, e *env, name string) {
	t.Helper()
	ceremony(t, ctx, name,
		chromedp.Click(chromedp.ID("passkey-second-factor")),
		chromedp.WaitVisible(chromedp.ID("passkey-list")))
	if who := evalString(t, ctx, `document.getElementById("whoami").textContent`); who != "bob" {
		t.Errorf("signed in as %q, want bob", who)
	}
	if amr := e.amrOfLastSignIn(); amr != "pwd hwk user pin mfa" {
		t.Errorf("amr = %q, want pwd hwk user pin mfa", amr)
	}
}

// passwordToPasskeyStep types bob's password on the login page and
// waits for the passkey button of the step after it.
func passwordToPasskeyStep(t *testing.T, ctx context.Context, base, name string) {
	t.Helper()
	browsertest.Step(t, ctx, name,
		chromedp.Navigate(base+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("passkey-second-factor")))
}

// TestBrowserPasskeyOnlyAccountNeedsItAfterThePassword: bob's only
// second factor is a passkey. Signed out, his password alone leads to
// the passkey step, which offers no code; the passkey signs him in. A
// browser that has the password but not the credential stays at that
// step, signed out: the phished password opens nothing.
func TestBrowserPasskeyOnlyAccountNeedsItAfterThePassword(t *testing.T) {
	e, base := newPasskeyServer(t)
	ctx := browsertest.New(t)
	virtualAuthenticator(t, ctx)
	registerPasskey(t, ctx, base)
	browsertest.Step(t, ctx, "sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))

	passwordToPasskeyStep(t, ctx, base, "password alone")
	if n := evalString(t, ctx, `String(document.querySelectorAll("#second-factor-form, #whoami").length)`); n != "0" {
		t.Error("the step after the password offers a code, or a session started")
	}
	passkeyStepSignsInBob(t, ctx, e, "passkey after the password")

	attacker := browsertest.New(t)
	virtualAuthenticator(t, attacker)
	passwordToPasskeyStep(t, attacker, base, "attacker's password")
	ceremony(t, attacker, "attacker's passkey",
		chromedp.Click(chromedp.ID("passkey-second-factor")),
		chromedp.WaitVisible(chromedp.ID("passkey-error")))
	browsertest.Step(t, attacker, "attacker opens the account page",
		chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(chromedp.ID("login-form")))
	if n := evalString(t, attacker, `String(document.querySelectorAll("#whoami").length)`); n != "0" {
		t.Error("the browser without the passkey is signed in")
	}
}

// TestBrowserPasskeySignCountBackwards: the authenticator's copy of the
// credential is put back with a sign count of zero (a clone made before
// the last sign-ins); its next sign-in reports a count below the stored
// one and is refused, and the stored count stays.
func TestBrowserPasskeySignCountBackwards(t *testing.T) {
	e, base := newPasskeyServer(t)
	ctx := browsertest.New(t)
	authenticator := virtualAuthenticator(t, ctx)
	registerPasskey(t, ctx, base)
	browsertest.Step(t, ctx, "sign out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	passkeySignIn(t, ctx, base, "passkey sign-in", "passkey-list")
	stored, err := e.accounts.Passkeys(t.Context(), "bob")
	if err != nil || len(stored) != 1 || stored[0].SignCount == 0 {
		t.Fatalf("stored passkeys: %+v, %v", stored, err)
	}

	creds, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: authenticator})
	if err != nil || len(creds.Credentials) != 1 {
		t.Fatalf("WebAuthn.getCredentials: %+v, %v", creds, err)
	}
	got := creds.Credentials[0]
	if _, err := chromedp.Call(ctx, webauthn.RemoveCredential, webauthn.RemoveCredentialParams{AuthenticatorID: authenticator, CredentialID: got.CredentialID}); err != nil {
		t.Fatalf("WebAuthn.removeCredential: %v", err)
	}
	// The same key and user, as a fresh copy with its count at zero. The
	// command is sent with its own parameters: cdproto's Credential
	// always carries a CMTG field this authenticator refuses.
	type clonedCredential struct {
		CredentialID         []byte  `json:"credentialId"`
		IsResidentCredential bool    `json:"isResidentCredential"`
		RpID                 string  `json:"rpId"`
		PrivateKey           []byte  `json:"privateKey"`
		UserHandle           []byte  `json:"userHandle"`
		SignCount            float64 `json:"signCount"`
	}
	type addCredential struct {
		AuthenticatorID webauthn.AuthenticatorID `json:"authenticatorId"`
		Credential      clonedCredential         `json:"credential"`
	}
	_, err = chromedp.Call(ctx, cdp.Command[addCredential, cdp.Empty]{Method: webauthn.CommandAddCredential}, addCredential{
		AuthenticatorID: authenticator,
		Credential: clonedCredential{CredentialID: got.CredentialID, IsResidentCredential: got.IsResidentCredential,
			RpID: got.RpID, PrivateKey: got.PrivateKey, UserHandle: got.UserHandle},
	})
	if err != nil {
		t.Fatalf("WebAuthn.addCredential: %v", err)
	}

	browsertest.Step(t, ctx, "sign out again", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	passkeySignIn(t, ctx, base, "the clone's sign-in", "passkey-error")
	if msg := evalString(t, ctx, `document.getElementById("passkey-error").textContent`); !strings.Contains(msg, "not accepted") {
		t.Errorf("the clone's message: %q", msg)
	}
	if n := evalString(t, ctx, `String(document.querySelectorAll("#whoami").length)`); n != "0" {
		t.Error("signed in with a count that went backwards")
	}
	if after, _ := e.accounts.Passkeys(t.Context(), "bob"); len(after) != 1 || after[0].SignCount != stored[0].SignCount {
		t.Errorf("stored count after the refusal: %+v, want %d", after, stored[0].SignCount)
	}
}
