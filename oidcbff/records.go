package oidcbff

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/cloakroom/cloakroom"
)

// Record kinds the client keeps as auxiliary records of the session store.
const (
	kindTokens = "tokens" // sealed tokens and the refresh lease of one session
	kindSID    = "sid"    // provider session ID -> the sessions it started
	kindSub    = "sub"    // provider subject -> user ID (when UserClaim is not sub)
	kindJTI    = "jti"    // back-channel logout token IDs already used
	kindState  = "state"  // pre-login states already used by a callback
	// Back-channel logouts remembered for the logins in flight (tombstones).
	kindEndedSID = "ended-sid" // provider session ID -> its logout
	kindEndedSub = "ended-sub" // provider subject -> its latest logout
)

// recordKey names an auxiliary record of the client.
func recordKey(kind, id string) cloakroom.Key { return cloakroom.AuxKey("oidcbff", kind, id) }

// records keeps opaque blobs as auxiliary records of the session store
// ([cloakroom.AuxStore]): never sessions, so never listed, counted or
// revoked as sessions; the store's own expiry removes them.
type records struct {
	store cloakroom.Store
	now   func() time.Time
}

// create writes a new record that lives for ttl; it fails with
// cloakroom.ErrConflict (wrapped) when a live record already has the key:
// an atomic create-if-absent on every store. A record that ends with the
// sessions (a session's tokens) ends with a global revocation too.
func (rs records) create(ctx context.Context, key cloakroom.Key, data []byte, ttl time.Duration, endsWithSessions bool) (cloakroom.AuxRecord, error) {
	rec := cloakroom.AuxRecord{Key: key, Version: 1, Expires: rs.now().Add(ttl), EndsWithSessions: endsWithSessions, Data: data}
	if endsWithSessions {
		epoch, err := rs.store.Epoch(ctx)
		if err != nil {
			return rec, err
		}
		rec.Epoch = epoch
	}
	return rec, rs.store.CommitAux(ctx, rec)
}

// update replaces rec's data if nobody wrote it since it was read
// (cloakroom.ErrConflict otherwise), keeping its expiry.
func (rs records) update(ctx context.Context, rec cloakroom.AuxRecord, data []byte) (cloakroom.AuxRecord, error) {
	rec.Version++
	rec.Data = data
	return rec, rs.store.CommitAux(ctx, rec)
}

func (rs records) find(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	return rs.store.FindAux(ctx, key)
}

func (rs records) delete(ctx context.Context, key cloakroom.Key) error {
	return rs.store.DeleteAux(ctx, key)
}

// randomID returns 128 random bits, base64url.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
