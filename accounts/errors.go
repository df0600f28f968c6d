package accounts

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by this package. They are wrapped with %w; test them with
// errors.Is.
var (
	// ErrUserExists means Create or Add met a user of the same name,
	// compared by [FoldName].
	ErrUserExists = errors.New("accounts: user already exists")
	// ErrNoSuchUser means no user has the given name.
	ErrNoSuchUser = errors.New("accounts: no such user")
	// ErrInvalidInput matches every validation failure: a bad name, role,
	// email or password. Such errors are [*InputError]s, whose message
	// says what to fix, for the user, and never repeats the password.
	ErrInvalidInput = errors.New("accounts: invalid input")
	// ErrWeakPassword wraps every refusal of a new password by the
	// password policy ([ValidatePassword], [CheckStrength]); such errors
	// match ErrInvalidInput too.
	ErrWeakPassword = errors.New("accounts: password not accepted")
	// ErrInvalidCredentials is the only failure [Service.Login]
	// reports for an unknown user, a disabled user and a wrong password, so
	// a caller cannot tell them apart.
	ErrInvalidCredentials = errors.New("accounts: invalid user name or password")
	// ErrThrottled is matched by every [*ThrottledError].
	ErrThrottled = errors.New("accounts: too many attempts")
	// ErrBusy means every password-hashing slot stayed taken for
	// [Config.MaxHashWait]: the server is overloaded, whatever the
	// credentials. It is not throttling (nothing was counted against the
	// user) and the attempt may be retried at once (a second later over
	// HTTP).
	ErrBusy = errors.New("accounts: too busy checking passwords")
	// ErrInvalidHash means an encoded password hash is not a well-formed
	// argon2id PHC string within this package's bounds.
	ErrInvalidHash = errors.New("accounts: invalid password hash")
	// ErrConflict is returned by [Store.Update] when [Change.IfPasswordHash]
	// or [Change.IfSecondFactor] no longer matches the stored value.
	ErrConflict = errors.New("accounts: account changed concurrently")
	// ErrStoreUnavailable wraps every [Store] failure other than the
	// answers its contract defines (ErrUserExists, ErrNoSuchUser,
	// ErrConflict): the store could not be reached or did not answer. The
	// store's own error is wrapped too.
	ErrStoreUnavailable = errors.New("accounts: account store unavailable")
	// ErrNoRevoker is returned by operations that must end the user's
	// sessions when [Config.RevokeSessions] is nil.
	ErrNoRevoker = errors.New("accounts: Config.RevokeSessions is not set")
)

// Errors of the second factor, wrapped with %w.
var (
	// ErrSecondFactorRequired is what [Service.Login] returns, as a
	// [*SecondFactorRequiredError], when the password is right and the
	// account has a second factor (an authenticator app or a passkey): no
	// session yet, the code ([Service.VerifySecondFactor]) or the passkey
	// ([Service.VerifyPasskeySecondFactor]) comes next.
	ErrSecondFactorRequired = errors.New("accounts: second factor required")
	// ErrInvalidCode means a TOTP or recovery code was wrong, already
	// used, or too far from the current time.
	ErrInvalidCode = errors.New("accounts: invalid code")
	// ErrNoSealer means no key seals TOTP secrets ([Config.Sealer] is
	// nil): TOTP cannot be enabled, nor checked for accounts that have it.
	ErrNoSealer = errors.New("accounts: no key file seals TOTP secrets; configure one (--totp-keys-file) to use a second factor")
	// ErrAlreadyEnrolled means the account has a second factor already;
	// an administrator resets it before a new one is enrolled.
	ErrAlreadyEnrolled = errors.New("accounts: the account has a second factor already")
	// ErrEnrolmentExpired means an enrolment was not confirmed within
	// [TOTPEnrolmentLifetime], or is not this account's.
	ErrEnrolmentExpired = errors.New("accounts: the enrolment expired; start again")
)

// Errors of passkeys, wrapped with %w.
var (
	// ErrPasskeysOff means no relying party is configured
	// ([Config.Passkeys]).
	ErrPasskeysOff = errors.New("accounts: passkeys are not configured on this server")
	// ErrInvalidPasskey means an authenticator's answer was refused: a
	// bad signature or origin, an expired or foreign challenge, an
	// unknown or removed credential, a sign count that did not grow, a
	// backup flag that changed.
	ErrInvalidPasskey = errors.New("accounts: the passkey was not accepted")
	// ErrNoSuchPasskey means the account has no passkey with that ID.
	ErrNoSuchPasskey = errors.New("accounts: no such passkey")
	// ErrTooManyPasskeys means the account has MaxPasskeys already.
	ErrTooManyPasskeys = errors.New("accounts: too many passkeys; remove one first")
	// ErrSignCountWentBack means an assertion's sign count was not above
	// the stored one: the credential may have been cloned. It wraps
	// ErrInvalidPasskey.
	ErrSignCountWentBack = fmt.Errorf("%w: its sign count did not increase (a cloned authenticator?)", ErrInvalidPasskey)
)

// ThrottledError is returned, instead of checking a password, when a client
// IP, a known device or an account has failed too often recently.
// errors.Is(err, ErrThrottled) holds.
type ThrottledError struct {
	// RetryAfter is how long the caller should wait before trying again;
	// round it up to whole seconds for an HTTP Retry-After header.
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("accounts: too many attempts, retry after %v", e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }
