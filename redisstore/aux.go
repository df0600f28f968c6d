package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/cloakroom/cloakroom"
)

// Auxiliary records live under keys of their own (Store.auxKey), apart
// from the sessions, each a string in the encodeAux form with a Redis TTL
// a margin past its expiry, so expired records go by themselves. They are
// read from Redis, never from the client-side cache: they are not on the
// per-request path, and a read of Redis needs no invalidation to be
// current. A record that ends with the sessions is compared with the
// epoch read with it, as Find does without the lease.

var _ cloakroom.AuxStore = (*Store)(nil)

// FindAux implements [cloakroom.AuxStore].
func (s *Store) FindAux(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	blob, found, epoch, err := s.getWithEpoch(ctx, s.auxKey(key))
	if err != nil {
		return cloakroom.AuxRecord{}, false, fmt.Errorf("redisstore: find record %s: %w", key.Short(), err)
	}
	if !found {
		return cloakroom.AuxRecord{}, false, nil
	}
	rec, err := decodeAux([]byte(blob), key)
	if err != nil {
		return cloakroom.AuxRecord{}, false, fmt.Errorf("redisstore: find record %s: %w", key.Short(), err)
	}
	if rec.Expired(s.now()) || rec.EndsWithSessions && rec.Epoch < epoch {
		return cloakroom.AuxRecord{}, false, nil
	}
	return rec, true, nil
}

// CommitAux implements [cloakroom.AuxStore]. The epoch is checked before
// and after the script, as Commit does: the script, in the record's slot,
// only gets the epoch the Store trusts, to treat a stored record below it
// as gone.
func (s *Store) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	what := "record " + rec.Key.Short()
	now := s.now()
	if rec.Version == 0 {
		return fmt.Errorf("redisstore: commit %s: version 0; versions start at 1", what)
	}
	// The script needs the epoch for the stored record, whatever the new
	// one is; only a record that ends with the sessions fails by it.
	var epoch uint64
	var err error
	if rec.EndsWithSessions {
		epoch, err = s.checkEpoch(ctx, rec.Epoch)
	} else {
		epoch, err = s.currentEpoch(ctx)
	}
	if err != nil {
		return fmt.Errorf("redisstore: commit %s: %w", what, err)
	}
	code, err := auxCommitScript.Exec(ctx, s.client, []string{s.auxKey(rec.Key)},
		[]string{strconv.FormatUint(rec.Version, 10), string(encodeAux(&rec)), strconv.FormatInt(now.UnixMicro(), 10),
			ttlMillis(rec.Expires, now), strconv.FormatUint(epoch, 10), strconv.FormatInt(rec.Expires.UnixMicro(), 10)},
	).AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: commit %s: %w", what, err)
	}
	if code == codeExpired {
		return fmt.Errorf("redisstore: commit %s: it expires at %v, not after now: %w", what, rec.Expires, cloakroom.ErrInvalidInput)
	}
	if err := versionError(what, rec.Version, code); err != nil {
		return err
	}
	if rec.EndsWithSessions {
		if _, err := s.checkEpoch(ctx, rec.Epoch); err != nil {
			return fmt.Errorf("redisstore: commit %s: %w", what, err)
		}
	}
	return nil
}

// DeleteAux implements [cloakroom.AuxStore].
func (s *Store) DeleteAux(ctx context.Context, key cloakroom.Key) error {
	if err := s.client.Do(ctx, s.client.B().Del().Key(s.auxKey(key)).Build()).Error(); err != nil {
		return fmt.Errorf("redisstore: delete record %s: %w", key.Short(), err)
	}
	return nil
}
