package accounts

import (
	"context"
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
}

// Store keeps user records. Implementations must be safe for concurrent use
// and follow these rules, which accountstest.Run checks:
//
//   - Names are unique and looked up without regard to ASCII case; a record
//     keeps the name's case as created, and every method returns that.
//   - Create fails with ErrUserExists, Get, Update and Delete with
//     ErrNoSuchUser, Update with ErrConflict as described in [Change].
//   - List returns every user sorted by name, ignoring ASCII case.
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
