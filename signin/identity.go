package signin

import (
	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/amrheader"

	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrInvalidIdentity wraps every reason Admit refuses an Identity: a user
// ID outside its method's namespace, an authentication time in the future,
// an amr value that is not a plain token, a value key the rules own. It is
// a defect of the way in or a hostile upstream answer, never the user's.
var ErrInvalidIdentity = errors.New("signin: invalid identity")

// Method names a way in.
type Method string

// The ways in.
const (
	// Password: a local account's password, checked by package accounts.
	Password Method = "password"
	// Passkey: a local account's passkey (WebAuthn), checked by package
	// accounts; no password.
	Passkey Method = "passkey"
	// OIDC: an OpenID provider's ID token, checked by package oidcbff.
	OIDC Method = "oidc"
	// Vault: an upstream app's own login answer, captured by package vault.
	Vault Method = "vault"
)

// RFC 8176 Authentication Method Reference values the ways in record.
const (
	AMRPassword = "pwd"  // a password
	AMROTP      = "otp"  // a one-time code
	AMRHardware = "hwk"  // a hardware-bound key (a passkey on a security key)
	AMRSoftware = "swk"  // a software-bound key
	AMRUser     = "user" // a test of user presence
	AMRPin      = "pin"  // a PIN or biometric unlocked the key (WebAuthn user verification)
	AMRMFA      = "mfa"  // several factors
)

// Bounds on what an Identity may carry into the session.
const (
	maxAMR      = 8
	maxAMRValue = 32
	maxRoles    = 64
)

// User IDs are namespaced by their way in, so that no way in can produce an
// ID another owns: an app user registering as "alice" behind the vault must
// never be the local account alice.
//
//   - A local account is its canonical name, which holds no ':' (package
//     accounts refuses one).
//   - A provider's user is "{provider}:{claim}": provider names are lower
//     case letters, digits and '-', never '/'.
//   - A vault user is "{route prefix}:{claim}": a route prefix starts with
//     '/', which neither a local name nor a provider name can.

// LocalUser returns the user ID of a local account's canonical name.
func LocalUser(name string) string { return name }

// ProviderUser returns the user ID of an OpenID provider's user: the
// provider's configured name, a colon, and the user claim's value.
func ProviderUser(provider, claim string) string { return provider + ":" + claim }

// VaultUser returns the user ID of a user of a vault route: the route's
// prefix ("/api/"), a colon, and the token's user claim.
func VaultUser(routePrefix, claim string) string { return routePrefix + ":" + claim }

// Kind is the namespace a user ID lies in: whose user it is.
type Kind string

// The kinds of users.
const (
	KindLocal    Kind = "local"    // a local account
	KindProvider Kind = "provider" // an OpenID provider's user
	KindVault    Kind = "vault"    // an upstream app's user, behind the vault
)

// KindOf returns the namespace userID lies in.
func KindOf(userID string) Kind {
	switch {
	case strings.HasPrefix(userID, "/"):
		return KindVault
	case strings.Contains(userID, ":"):
		return KindProvider
	}
	return KindLocal
}

// kind returns the namespace of the users a method signs in.
func (m Method) kind() Kind {
	switch m {
	case Password, Passkey:
		return KindLocal
	case OIDC:
		return KindProvider
	case Vault:
		return KindVault
	}
	return ""
}

// Identity is who signed in, and how, as a way in tells [Admission.Admit].
type Identity struct {
	// UserID is the namespaced user ID (see [LocalUser], [ProviderUser],
	// [VaultUser]); it must lie in Method's namespace.
	UserID string
	// Method is the way in.
	Method Method
	// AMR lists how the user authenticated, as RFC 8176 values ("pwd",
	// "otp", "hwk", ...). Empty when the way in cannot tell (a vault
	// capture: the app checked whatever it checks).
	AMR []string
	// AuthTime is when the user actually proved who they are: the
	// password check, the provider's auth_time (or the completion of a
	// login the gateway started with prompt=login), the vault capture.
	// The zero time means unknown, which never counts as recent for a
	// step-up. A time in the future beyond the admission's clock skew is
	// refused.
	AuthTime time.Time
	// Email, Name and Roles describe the user to the app (forwarded
	// upstream) and to the account page. Roles are the provider's groups
	// for a provider's user.
	Email string
	Name  string
	Roles []string
	// Pin, from [cloakroom.Manager.Pin] or PinEpoch, taken before the
	// credentials were checked: the sign-in fails if the account changed
	// or every session was revoked meanwhile. The zero Pin reads the
	// generation and the epoch at the sign-in itself.
	Pin cloakroom.Pin
	// Persistent asks for a "remember me" cookie.
	Persistent bool
	// Values are the way in's own session values (a provider's token
	// reference, a sealed vault token), stored in the sign-in's single
	// write. Keys the rules own (see the Value constants) are refused.
	Values map[string]string
	// DeviceTokens are the known-device tokens of the login throttle to
	// keep in the browser (local accounts; see [DeviceCookie]).
	DeviceTokens []string
}

// validate checks id against the rules that do not need the store.
func (id *Identity) validate(now time.Time, skew time.Duration) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidIdentity}, args...)...)
	}
	want := id.Method.kind()
	if want == "" {
		return bad("unknown method %q", id.Method)
	}
	if id.UserID == "" {
		return bad("empty user ID")
	}
	if got := KindOf(id.UserID); got != want {
		return bad("user ID %q is a %s user's, and %s signs in %s users", id.UserID, got, id.Method, want)
	}
	if !id.AuthTime.IsZero() && id.AuthTime.After(now.Add(skew)) {
		return bad("authentication time %s is in the future (now %s)", id.AuthTime.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if len(id.AMR) > maxAMR {
		return bad("more than %d amr values", maxAMR)
	}
	for _, v := range id.AMR {
		// What X-Forwarded-Amr can carry as itself, so that no session
		// holds an amr the proxy or forward auth must refuse.
		if len(v) > maxAMRValue || !amrheader.Value(v) {
			return bad("amr value %q is not a plain token", v)
		}
	}
	if len(id.Roles) > maxRoles {
		return bad("more than %d roles", maxRoles)
	}
	for k := range id.Values {
		if slices.Contains(ruleKeys, k) {
			return bad("value key %q belongs to the sign-in rules", k)
		}
	}
	return nil
}
