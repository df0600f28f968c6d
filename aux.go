package cloakroom

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// AuxRecord is a record kept beside the sessions by a part built on the
// session store: an OpenID client's sealed provider tokens, its
// back-channel logout index and tombstones, used logout-token IDs, a
// WebAuthn challenge. It is never a session: [Store.Find] does not return
// it, and listing, counting and revoking sessions never see it. It has an
// expiry of its own and is versioned like a session, so a part can update
// it with optimistic concurrency.
type AuxRecord struct {
	// Key names the record, in a key space of its own (see [AuxKey]).
	Key Key
	// Version is 1 for a record being created and grows by one with every
	// successful CommitAux.
	Version uint64
	// Expires is when the store stops finding the record, by the store's
	// clock. It must be after the store's now when the record is written.
	Expires time.Time
	// EndsWithSessions ties the record to the sessions' lifetime: it is
	// found only while Epoch is the store's current epoch, so a global
	// revocation ([Store.BumpEpoch]) ends it with every session (a
	// session's sealed provider tokens). Records that must outlive a
	// revocation (logout tombstones) leave it false.
	EndsWithSessions bool
	// Epoch is the epoch a record that ends with the sessions was created
	// under; CommitAux fails with ErrNotFound when it is below the current
	// epoch. Ignored when EndsWithSessions is false.
	Epoch uint64
	// Data is the record's content, opaque to the store. A record returned
	// by FindAux may share Data with the store: replace it, never modify it
	// in place.
	Data []byte
}

// Expired reports whether the record is no longer valid at now.
func (r *AuxRecord) Expired(now time.Time) bool { return !now.Before(r.Expires) }

// AuxStore keeps [AuxRecord]s, part of the [Store] contract. Like the
// session methods, a missing or expired record is found == false with a nil
// error, and an error means the store failed.
type AuxStore interface {
	// FindAux returns the live record stored under key.
	FindAux(ctx context.Context, key Key) (rec AuxRecord, found bool, err error)

	// CommitAux writes rec. With rec.Version == 1 it creates the record and
	// fails with ErrConflict if a live record has the key. Otherwise it
	// replaces the stored record only if its Version is rec.Version-1, and
	// fails with ErrConflict if not, or ErrNotFound if the record is gone.
	// A record that ends with the sessions fails with ErrNotFound when its
	// Epoch is below the current epoch.
	CommitAux(ctx context.Context, rec AuxRecord) error

	// DeleteAux removes the record. Deleting a missing key is not an error.
	DeleteAux(ctx context.Context, key Key) error
}

// AuxKey returns the key of the auxiliary record of the given kind and ID,
// for a part named by namespace ("oidcbff"). Keys of different namespaces
// and kinds never collide.
func AuxKey(namespace, kind, id string) Key {
	h := sha256.New()
	for _, part := range [...]string{namespace, kind, id} {
		// Length-prefixed, so ("a", "bc") and ("ab", "c") differ.
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		h.Write([]byte(part))
	}
	var k Key
	h.Sum(k[:0])
	return k
}
