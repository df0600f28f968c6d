package cloakroom

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Key identifies a session in a [Store]: the SHA-256 of the session token.
// A store never sees the token itself, so a dump of the store yields no
// token a browser could present.
type Key [32]byte

// String returns the key in lower-case hex. It is safe to log.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Short returns the first 12 hex digits of the key, enough to correlate log
// lines without writing the whole hash everywhere.
func (k Key) Short() string { return hex.EncodeToString(k[:6]) }

// Record is one session as a [Store] keeps it. The store persists every
// field; it indexes Key, UserID and the expiry, and it compares Version and
// Generation in [Store.Commit]. Use [Record.MarshalBinary] when a store
// wants a single blob.
type Record struct {
	Key    Key    // SHA-256 of the token
	Handle string // public identifier shown in device lists; not derived from the token
	UserID string // "" for an anonymous session

	// Generation is the user's generation counter when the session was
	// created. A session whose Generation is below the user's current one
	// has been revoked by [Store.BumpGeneration].
	Generation uint64
	// Version starts at 1 and grows by one with every successful Commit.
	Version uint64
	// Epoch is the global epoch the session was created under (see
	// [Store.BumpEpoch]); a renewal keeps it. A session whose Epoch is
	// below the store's current epoch has been revoked with every other
	// session. Sessions stored before epochs existed count as epoch 0.
	Epoch uint64

	CreatedAt        time.Time
	LastSeen         time.Time
	IdleTimeout      time.Duration
	AbsoluteDeadline time.Time
	Persistent       bool // "remember me": the cookie carries Max-Age

	IP        string
	UserAgent string

	// Data holds the session values, encoded by the manager; opaque to
	// stores. A record returned by Find may share Data with the store:
	// callers replace it, never modify it in place.
	Data []byte
}

// Expiry returns when the session stops being valid: the earlier of the idle
// deadline (LastSeen plus IdleTimeout) and the absolute deadline.
func (r *Record) Expiry() time.Time {
	idle := r.LastSeen.Add(r.IdleTimeout)
	if idle.Before(r.AbsoluteDeadline) {
		return idle
	}
	return r.AbsoluteDeadline
}

// Expired reports whether the session is no longer valid at now.
func (r *Record) Expired(now time.Time) bool { return !now.Before(r.Expiry()) }

// Errors a [Store] returns from Commit. Stores wrap them with %w.
var (
	// ErrConflict means the stored version is not rec.Version-1: another
	// request committed first. The manager reloads and re-applies its changes.
	ErrConflict = errors.New("cloakroom: session version conflict")
	// ErrNotFound means the session no longer exists: it was deleted,
	// expired, or revoked by a generation bump. A store never re-creates a
	// session on such a Commit.
	ErrNotFound = errors.New("cloakroom: session not found")
)

// Store keeps sessions. Every method takes a context and is safe for
// concurrent use. Expiry decisions use the store's own clock, which tests
// replace (see package storetest).
//
// A missing, expired or revoked session is found == false with a nil error;
// a non-nil error means the store failed, and the manager then treats the
// request as not logged in (fail closed).
//
// A session is revoked in three ways: deleted by its key, by its user's
// generation ([Store.BumpGeneration]), or with every other session by the
// global epoch ([Store.BumpEpoch]). Each takes effect on every node and in
// every cache before the revoking call returns.
type Store interface {
	// Find returns the live session stored under key. It reports false for a
	// session that has expired, whose Generation is below its user's
	// current generation, or whose Epoch is below the current epoch.
	Find(ctx context.Context, key Key) (rec Record, found bool, err error)

	// Commit writes rec. With rec.Version == 1 it creates the session and
	// fails with ErrConflict if the key exists. Otherwise it replaces the
	// stored session only if the stored Version is rec.Version-1, and
	// fails with ErrConflict if not, or ErrNotFound if the session is gone.
	// It fails with ErrNotFound, writing nothing that can be found, if
	// rec.Epoch is below the current epoch, or, for a session with a
	// UserID, if rec.Generation is below the user's current generation.
	Commit(ctx context.Context, rec Record) error

	// Delete removes the session. Deleting a missing key is not an error.
	Delete(ctx context.Context, key Key) error

	// List returns the live sessions of userID, in any order (the manager
	// sorts them for display).
	List(ctx context.Context, userID string) ([]Record, error)

	// Generation returns the user's current generation (0 for a user never
	// bumped).
	Generation(ctx context.Context, userID string) (uint64, error)

	// BumpGeneration increments the user's generation and returns the new
	// value. Every existing session of the user stops being found at once,
	// on every node and in every cache; the store may also delete them.
	BumpGeneration(ctx context.Context, userID string) (uint64, error)

	// Epoch returns the current global epoch (0 for a store never bumped).
	Epoch(ctx context.Context) (uint64, error)

	// BumpEpoch increments the global epoch and returns the new value.
	// Every existing session, of every user and anonymous, and every
	// auxiliary record bound to the sessions (AuxRecord.EndsWithSessions)
	// stops being found at once, on every node and in every cache, before
	// it returns; the store may also delete them. Sessions and records
	// created afterwards, at the new epoch, live as usual. It publishes
	// End{Epoch: new} to the store's [EndNotifier] subscribers.
	BumpEpoch(ctx context.Context) (uint64, error)

	// Rotator replaces a session by its successor in one atomic step; see
	// [Rotator.Rotate]. The storetest suite's race cases check it.
	Rotator

	// AuxStore keeps the records other parts keep beside the sessions;
	// see [AuxStore].
	AuxStore
}

// Rotation describes one atomic token rotation; see [Rotator.Rotate].
type Rotation struct {
	// Old is the session being replaced; the zero Key for none.
	Old Key
	// OldMustLive makes Rotate fail with ErrNotFound, writing nothing, unless
	// the session under Old exists, has not expired by the store's clock,
	// its Generation is its user's current generation and its Epoch is the
	// current epoch. When false, Old is deleted if present (a login over
	// whatever the browser had before).
	OldMustLive bool
	// OldVersion, when not 0 and with OldMustLive, makes Rotate fail with
	// ErrConflict, writing nothing, unless the session under Old is still
	// at this Version. A rotation that carries the old session's values
	// over (a renewal) passes the version it read them at, so a value
	// change committed in between is not undone by the stale copy: the
	// caller reloads the session and rotates again.
	OldVersion uint64
	// New is the session to create: a new Key (neither the zero Key nor
	// Old), Version 1, and a Generation and Epoch below 2^63-1 (see
	// [Rotation.Check]). For a UserID, New.Generation must equal the
	// user's current generation at the moment of the write, else Rotate
	// fails with ErrNotFound, writing nothing.
	// New.Epoch must not be below the current epoch, else Rotate fails with
	// ErrNotFound and leaves nothing that can be found. A renewal passes the
	// old session's Epoch on; a new session carries the epoch its login
	// read (or pinned) before the credentials were checked.
	New Record
	// Bump increments New.UserID's generation in the same atomic step, after
	// the checks above: every other session of the user dies, and New is
	// stored with the incremented generation. Bump requires New.UserID
	// (see [Rotation.Check]).
	Bump bool
}

// Rotator is the store operation behind every token rotation (login over a
// session, renewal, revoking the other sessions), part of the [Store]
// contract. Checking that the old session still lives and creating its
// successor are one atomic step, so a request parked between the two
// cannot bring a logged-out or revoked session back.
type Rotator interface {
	// Rotate checks Old (when OldMustLive) and New's generation, bumps the
	// generation (when Bump), creates New and deletes Old, all or nothing. It
	// returns New as stored, its Generation set. It first calls
	// [Rotation.Check] and returns its error, writing nothing. It fails
	// with ErrNotFound (wrapped) when a condition does not hold, and with
	// ErrConflict when New.Key exists or Old is not at OldVersion. Like
	// Delete and BumpGeneration, it publishes the ends it causes to the
	// store's [EndNotifier] subscribers.
	Rotate(ctx context.Context, r Rotation) (Record, error)
}

// maxCounter bounds a generation or an epoch a rotation may carry: the SQL
// stores keep them as signed 64-bit integers, and one at the bound could
// never be bumped, so its sessions could never be revoked.
const maxCounter = 1<<63 - 1

// Check reports what makes r a rotation no store may carry out, the same
// for every store, which calls it before anything else: an error wrapping
// ErrInvalidInput for a caller's mistake (New not at Version 1, New under
// the zero Key or under Old, a Generation or Epoch not below 2^63-1, a
// Bump without a user), or wrapping ErrNotFound for OldMustLive without
// an Old, a session that cannot live. It returns nil for every other
// rotation.
func (r Rotation) Check() error {
	var none Key
	switch {
	case r.New.Version != 1:
		return fmt.Errorf("%w: new session at version %d, not 1", ErrInvalidInput, r.New.Version)
	case r.New.Key == none:
		return fmt.Errorf("%w: new session under the zero key", ErrInvalidInput)
	case r.New.Key == r.Old:
		return fmt.Errorf("%w: new session under the old session's key", ErrInvalidInput)
	case r.New.Generation >= maxCounter || r.New.Epoch >= maxCounter:
		return fmt.Errorf("%w: new session at generation %d and epoch %d, not both below 2^63-1", ErrInvalidInput, r.New.Generation, r.New.Epoch)
	case r.Bump && r.New.UserID == "":
		return fmt.Errorf("%w: a bump needs a user", ErrInvalidInput)
	case r.OldMustLive && r.Old == none:
		return fmt.Errorf("no old session to live: %w", ErrNotFound)
	}
	return nil
}

// End is one session end a store reports to [EndNotifier] subscribers.
type End struct {
	// Key is set when one session was deleted.
	Key Key
	// UserID and Generation are set when the user's generation was bumped
	// to Generation: every session of the user below it is dead.
	UserID     string
	Generation uint64
	// Epoch is set when the global epoch was bumped to Epoch: every
	// session created under a lower epoch is dead.
	Epoch uint64
	// All means notifications may have been missed (a reconnect, another
	// process wrote the store): every watched session must be re-checked.
	All bool
}

// EndNotifier is implemented by stores that tell every process using them
// when sessions end, so open connections of a session (streams,
// WebSockets) can be closed with it on every node.
type EndNotifier interface {
	// WatchEnds calls fn for every session end made by any process until
	// ctx is done, then returns. fn must not block. Ends the store cannot
	// pinpoint are reported as End{All: true}, and so is the start: once
	// the subscription is live, fn gets End{All: true}, since ends made
	// before then were not reported to it (a caller that watched a session
	// already may have missed its end, and must re-check). The same holds
	// after every reconnect.
	WatchEnds(ctx context.Context, fn func(End)) error
}

// Pinger is implemented by stores that can report their health. The gateway
// uses it for readiness checks.
type Pinger interface {
	Ping(ctx context.Context) error
}
