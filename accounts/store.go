package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// User is a local account. Name is the user ID the gateway passes to
// cloakroom's Session.Login.
type User struct {
	Name              string
	Email             string
	Roles             []string
	Disabled          bool
	CreatedAt         time.Time
	PasswordChangedAt time.Time
}

// Record is what a [Store] keeps: the user and its PHC-encoded argon2id
// password hash. The hash never leaves the [Service].
type Record struct {
	User
	PasswordHash string
	// SecondFactor is the account's second factor (its TOTP secret, sealed,
	// the last time step used and the hashes of its recovery codes),
	// encoded by the [Service]; "" for none. Stores keep it as an opaque
	// string and never interpret it.
	SecondFactor string
	// Passkeys is the account's registered passkeys (WebAuthn public-key
	// credentials: IDs, public keys, sign counts and flags; never a
	// private key), encoded by the [Service]; "" for none. Stores keep it
	// as an opaque string and never interpret it.
	Passkeys string
}

// Change lists the fields [Store.Update] sets; nil fields keep their value.
type Change struct {
	PasswordHash      *string
	PasswordChangedAt *time.Time
	Roles             *[]string
	Email             *string
	Disabled          *bool
	// IfPasswordHash, when not empty, applies the change only if the stored
	// hash still equals it, and otherwise fails with ErrConflict. It stops a
	// background rehash from undoing a concurrent password change.
	IfPasswordHash string
	// SecondFactor, when not nil, replaces the encoded second factor (""
	// removes it).
	SecondFactor *string
	// IfSecondFactor, when not nil, applies the change only if the stored
	// second factor still equals it ("" for none), and otherwise fails
	// with ErrConflict. It makes using a TOTP step or a recovery code one
	// atomic compare-and-swap: of two logins racing with the same code,
	// one wins.
	IfSecondFactor *string
	// Passkeys, when not nil, replaces the encoded passkeys ("" removes
	// them all).
	Passkeys *string
	// IfPasskeys, when not nil, applies the change only if the stored
	// passkeys still equal it ("" for none), and otherwise fails with
	// ErrConflict: a passkey's new sign count, an added or a removed
	// passkey is one compare-and-swap, so two ceremonies racing cannot
	// lose either's write or take a sign count back.
	IfPasskeys *string
}

// Store keeps user records. Implementations must be safe for concurrent use
// and follow these rules, which accountstest.Run checks:
//
//   - Names are unique and looked up by their [FoldName] (case, width
//     and Unicode normalisation aside); a record keeps the name as
//     created, and every method returns that.
//   - Create fails with ErrUserExists, Get, Update and Delete with
//     ErrNoSuchUser, Update with ErrConflict as described in [Change]
//     (IfPasswordHash, IfSecondFactor and IfPasskeys, checked and written
//     atomically).
//   - Record.SecondFactor and Record.Passkeys round-trip unchanged through
//     Create, Get and Update; List returns neither.
//   - List returns every user sorted by the bytes of their FoldName.
//   - Times round-trip with at least microsecond precision; slices passed in
//     or returned are not shared with the store.
//   - A done context makes a call fail with an error wrapping ctx.Err().
//
// Stores do not validate names or passwords; the [Service] does.
type Store interface {
	Create(ctx context.Context, rec Record) error
	Get(ctx context.Context, name string) (Record, error)
	Update(ctx context.Context, name string, change Change) (User, error)
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]User, error)
}

// availability marks the failures of the Store it wraps with
// ErrStoreUnavailable, so that callers of the [Service] can tell an outage
// (503) from a bug without knowing the store.
type availability struct{ store Store }

func storeFailure(err error) error {
	if err == nil || errors.Is(err, ErrNoSuchUser) || errors.Is(err, ErrUserExists) ||
		errors.Is(err, ErrConflict) || errors.Is(err, ErrStoreUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}

func (a availability) Create(ctx context.Context, rec Record) error {
	return storeFailure(a.store.Create(ctx, rec))
}

func (a availability) Get(ctx context.Context, name string) (Record, error) {
	rec, err := a.store.Get(ctx, name)
	return rec, storeFailure(err)
}

func (a availability) Update(ctx context.Context, name string, change Change) (User, error) {
	u, err := a.store.Update(ctx, name, change)
	return u, storeFailure(err)
}

func (a availability) Delete(ctx context.Context, name string) error {
	return storeFailure(a.store.Delete(ctx, name))
}

func (a availability) List(ctx context.Context) ([]User, error) {
	users, err := a.store.List(ctx)
	return users, storeFailure(err)
}
