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
	// compared without regard to ASCII case.
	ErrUserExists = errors.New("accounts: user already exists")
	// ErrNoSuchUser means no user has the given name.
	ErrNoSuchUser = errors.New("accounts: no such user")
	// ErrInvalidInput wraps every validation failure: a bad name, role,
	// email or password. The message says what to fix and never repeats
	// the password.
	ErrInvalidInput = errors.New("accounts: invalid input")
	// ErrInvalidCredentials is the only failure [Service.Login]
	// reports for an unknown user, a disabled user and a wrong password, so
	// a caller cannot tell them apart.
	ErrInvalidCredentials = errors.New("accounts: invalid user name or password")
	// ErrThrottled is matched by every [*ThrottledError].
	ErrThrottled = errors.New("accounts: too many attempts")
	// ErrInvalidHash means an encoded password hash is not a well-formed
	// argon2id PHC string within this package's bounds.
	ErrInvalidHash = errors.New("accounts: invalid password hash")
	// ErrConflict is returned by [Store.Update] when [Change.IfPasswordHash]
	// no longer matches the stored hash.
	ErrConflict = errors.New("accounts: password hash changed concurrently")
	// ErrStoreUnavailable wraps every [Store] failure other than the
	// answers its contract defines (ErrUserExists, ErrNoSuchUser,
	// ErrConflict): the store could not be reached or did not answer. The
	// store's own error is wrapped too.
	ErrStoreUnavailable = errors.New("accounts: account store unavailable")
	// ErrNoRevoker is returned by operations that must end the user's
	// sessions when [Config.RevokeSessions] is nil.
	ErrNoRevoker = errors.New("accounts: Config.RevokeSessions is not set")
)

// ThrottledError is returned, instead of checking a password, when a client
// IP or an account has failed too often recently, or when too many password
// hashes are being computed at once. errors.Is(err, ErrThrottled) holds.
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
