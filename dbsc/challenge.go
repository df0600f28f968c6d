package dbsc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/cloakroom/cloakroom"
)

// Errors of a challenge, wrapped in what the endpoints return.
var (
	// ErrChallenge: the proof signs a challenge this server did not issue
	// to this session, or one that has expired.
	ErrChallenge = errors.New("dbsc: unknown or expired challenge")
	// ErrChallengeUsed: the proof signs a challenge already used once.
	ErrChallengeUsed = errors.New("dbsc: challenge already used")
	// ErrUnavailable wraps a store failure; the request may be retried.
	ErrUnavailable = errors.New("dbsc: the session store failed")
)

// auxNamespace names this package's auxiliary records (see
// [cloakroom.AuxKey]).
const auxNamespace = "dbsc"

// Kinds of auxiliary records. A registration challenge is keyed by the
// session's handle, so a session has at most one and a proof names no
// record of its own choosing; a refresh challenge is keyed by its value,
// so several tabs refreshing at once each hold one of their own.
const (
	kindRegistration = "registration"
	kindRefresh      = "refresh"
)

// challengeBytes is the entropy of a challenge: 256 bits.
const challengeBytes = 32

// maxChallenge bounds a challenge read from a proof before a store lookup.
const maxChallenge = 64

// usedMarker replaces a challenge's data once it is used: the record stays
// until it expires, so a replay is told apart from an unknown challenge.
const usedMarker = "used"

func newChallenge() string {
	b := make([]byte, challengeBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// challenges issues and spends single-use challenges kept as auxiliary
// records, so every node of a cluster sees one spent at once.
type challenges struct {
	store cloakroom.AuxStore
	now   func() time.Time
}

// issueRegistration stores a registration challenge for the session with
// handle, valid for ttl, and returns it.
func (c challenges) issueRegistration(ctx context.Context, handle string, ttl time.Duration) (string, error) {
	challenge := newChallenge()
	rec := cloakroom.AuxRecord{
		Key: cloakroom.AuxKey(auxNamespace, kindRegistration, handle), Version: 1,
		Expires: c.now().Add(ttl), Data: []byte(challenge),
	}
	if err := c.store.CommitAux(ctx, rec); err != nil {
		// A conflict means the session was already offered one: a
		// session gets one registration challenge, never a second.
		return "", fmt.Errorf("%w: store registration challenge: %w", ErrUnavailable, err)
	}
	return challenge, nil
}

// spendRegistration spends the registration challenge of the session with
// handle, if the proof signed it: a challenge of another session, or of
// none, is ErrChallenge; a second use is ErrChallengeUsed.
func (c challenges) spendRegistration(ctx context.Context, handle, signed string) error {
	key := cloakroom.AuxKey(auxNamespace, kindRegistration, handle)
	return c.spend(ctx, key, func(data []byte) error {
		if string(data) == usedMarker {
			return ErrChallengeUsed
		}
		if subtle.ConstantTimeCompare(data, []byte(signed)) != 1 {
			return ErrChallenge
		}
		return nil
	})
}

// issueRefresh stores a refresh challenge for the session with handle,
// valid for ttl, and returns it.
func (c challenges) issueRefresh(ctx context.Context, handle string, ttl time.Duration) (string, error) {
	challenge := newChallenge()
	rec := cloakroom.AuxRecord{
		Key: cloakroom.AuxKey(auxNamespace, kindRefresh, challenge), Version: 1,
		Expires: c.now().Add(ttl), Data: []byte(handle),
	}
	if err := c.store.CommitAux(ctx, rec); err != nil {
		return "", fmt.Errorf("%w: store refresh challenge: %w", ErrUnavailable, err)
	}
	return challenge, nil
}

// spendRefresh spends the refresh challenge the proof signed, if it was
// issued to the session with handle.
func (c challenges) spendRefresh(ctx context.Context, handle, signed string) error {
	if signed == "" || len(signed) > maxChallenge {
		return ErrChallenge
	}
	key := cloakroom.AuxKey(auxNamespace, kindRefresh, signed)
	return c.spend(ctx, key, func(data []byte) error {
		if string(data) == usedMarker {
			return ErrChallengeUsed
		}
		if subtle.ConstantTimeCompare(data, []byte(handle)) != 1 {
			return ErrChallenge // issued to another session
		}
		return nil
	})
}

// spend marks the record under key used, if check accepts its data. The
// mark is a compare-and-set on the record's version: of two requests
// spending one challenge at once, on any nodes, exactly one wins.
func (c challenges) spend(ctx context.Context, key cloakroom.Key, check func(data []byte) error) error {
	rec, found, err := c.store.FindAux(ctx, key)
	if err != nil {
		return fmt.Errorf("%w: find challenge: %w", ErrUnavailable, err)
	}
	if !found || rec.Expired(c.now()) {
		return ErrChallenge
	}
	if err := check(rec.Data); err != nil {
		return err
	}
	rec.Version++
	rec.Data = []byte(usedMarker)
	switch err := c.store.CommitAux(ctx, rec); {
	case errors.Is(err, cloakroom.ErrConflict):
		return ErrChallengeUsed // spent by a concurrent request
	case errors.Is(err, cloakroom.ErrNotFound), errors.Is(err, cloakroom.ErrInvalidInput):
		return ErrChallenge // expired meanwhile
	case err != nil:
		return fmt.Errorf("%w: spend challenge: %w", ErrUnavailable, err)
	}
	return nil
}
