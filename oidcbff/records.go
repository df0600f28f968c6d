package oidcbff

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/cloakroom/cloakroom"
)

// Record kinds kept in the session store besides the sessions themselves.
const (
	kindTokens = "tokens" // sealed tokens and the refresh lease of one session
	kindSID    = "sid"    // provider session ID -> the sessions it started
	kindSub    = "sub"    // provider subject -> user ID (when UserClaim is not sub)
	kindJTI    = "jti"    // back-channel logout token IDs already used
	// Back-channel logouts remembered for the logins in flight (tombstones).
	kindEndedSID = "ended-sid" // provider session ID -> its logout
	kindEndedSub = "ended-sub" // provider subject -> its latest logout
)

// recordKey names an auxiliary record. The hash input is always longer than
// 32 bytes, while a session key is the SHA-256 of a 32-byte cookie token, so
// no cookie can ever load one of these records as a session.
func recordKey(kind, id string) cloakroom.Key {
	idHash := sha256.Sum256([]byte(id))
	return sha256.Sum256([]byte("cloakroom/oidcbff/" + kind + "/" + hex.EncodeToString(idHash[:])))
}

// records stores opaque blobs as anonymous records of the session store.
// Anonymous (no UserID) so they never show up in a user's device list; the
// store's own expiry removes them.
type records struct {
	store cloakroom.Store
	now   func() time.Time
}

// create writes a new record; it fails with cloakroom.ErrConflict (wrapped)
// when a live record already has the key: an atomic create-if-absent on
// every store.
func (rs records) create(ctx context.Context, key cloakroom.Key, data []byte, ttl time.Duration) (cloakroom.Record, error) {
	now := rs.now()
	rec := cloakroom.Record{
		Key: key, Handle: randomID(), Version: 1,
		CreatedAt: now, LastSeen: now, IdleTimeout: ttl, AbsoluteDeadline: now.Add(ttl),
		Data: data,
	}
	return rec, rs.store.Commit(ctx, rec)
}

// update replaces rec's data if nobody wrote it since it was read
// (cloakroom.ErrConflict otherwise), keeping its deadline.
func (rs records) update(ctx context.Context, rec cloakroom.Record, data []byte) (cloakroom.Record, error) {
	now := rs.now()
	rec.Version++
	rec.Data = data
	// The idle window is stretched to keep the absolute deadline: these
	// records are not touched by requests.
	rec.LastSeen = now
	rec.IdleTimeout = max(rec.AbsoluteDeadline.Sub(now), time.Second)
	return rec, rs.store.Commit(ctx, rec)
}

func (rs records) find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	rec, found, err := rs.store.Find(ctx, key)
	if err != nil || !found || rec.Key != key || rec.Expired(rs.now()) {
		return cloakroom.Record{}, false, err
	}
	return rec, true, nil
}

func (rs records) delete(ctx context.Context, key cloakroom.Key) error {
	return rs.store.Delete(ctx, key)
}

// randomID returns 128 random bits, base64url.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
