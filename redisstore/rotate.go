package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

var _ cloakroom.Rotator = (*Store)(nil)

// owner says who a session key belongs to.
type owner struct {
	kind   byte   // pointerUser, pointerAnonymous, or 0 when there is no session
	userID string // for pointerUser
}

// ownerOf reads a key's pointer from Redis (not the cache). A key's owner
// never changes while its session lives, so the answer stays true for as
// long as it matters.
func (s *Store) ownerOf(ctx context.Context, key cloakroom.Key) (owner, error) {
	v, err := s.client.Do(ctx, s.client.B().Get().Key(s.pointerKey(key)).Build()).ToString()
	switch {
	case err == nil && len(v) > 0 && (v[0] == pointerUser || v[0] == pointerAnonymous):
		return owner{kind: v[0], userID: v[1:]}, nil
	case err == nil:
		return owner{}, fmt.Errorf("pointer of unknown kind: %w", cloakroom.ErrBadRecord)
	case !rueidis.IsRedisNil(err):
		return owner{}, err
	}
	return owner{}, nil
}

// Rotate implements [cloakroom.Rotator]. When the old and the new session
// belong to the same user, as in a renewal or a revocation of the other
// sessions, every check and write is one script in the user's slot. A
// login over another owner's session (an anonymous one, usually) deletes
// that session first, then creates the new one atomically. Renewing an
// anonymous session creates the new one, then deletes the old one only if
// it still lives, and takes the new one back otherwise.
func (s *Store) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	rec := r.New
	// Checked before the login path below deletes another owner's
	// session: a refused rotation writes nothing.
	if err := r.Check(); err != nil {
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s to %s: %w", r.Old.Short(), rec.Key.Short(), err)
	}
	// As in commit: the scripts cannot read the epoch, so it is checked
	// before (failing early, writing nothing) and after (a bump that ran
	// meanwhile left the new session unreachable).
	epoch, err := s.checkEpoch(ctx, rec.Epoch)
	if err != nil {
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: %w", rec.Key.Short(), err)
	}
	stored, err := s.rotate(ctx, r, epoch)
	if err == nil {
		if _, err = s.checkEpoch(ctx, rec.Epoch); err != nil {
			s.recent.markSession(rec.Key, wroteUnknown, "")
			err = fmt.Errorf("redisstore: rotate to %s: %w", rec.Key.Short(), err)
		}
	}
	if err != nil {
		return cloakroom.Record{}, err
	}
	return stored, nil
}

// rotate is Rotate once r and its epoch are checked; epoch is the one the
// Store trusts, below which a stored session is dead.
func (s *Store) rotate(ctx context.Context, r cloakroom.Rotation, epoch uint64) (cloakroom.Record, error) {
	rec := r.New
	var old owner
	if r.Old != (cloakroom.Key{}) {
		var err error
		if old, err = s.ownerOf(ctx, r.Old); err != nil {
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: %w", r.Old.Short(), err)
		}
		s.found.forget(r.Old)
		if old.kind == 0 && r.OldMustLive {
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: old session is gone: %w", r.Old.Short(), cloakroom.ErrNotFound)
		}
	}
	sameUser := old.kind == pointerUser && old.userID == rec.UserID
	if old.kind != 0 && !sameUser && !r.OldMustLive {
		// A login over whatever the browser had: that session goes either way.
		if err := s.Delete(ctx, r.Old); err != nil {
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate: %w", err)
		}
		old = owner{}
	}
	if old.kind != 0 && !sameUser {
		if r.Bump {
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: a bump must rotate a session of the same user", r.Old.Short())
		}
		return s.rotateAcross(ctx, r, old, epoch)
	}
	var stored cloakroom.Record
	var err error
	if rec.UserID == "" {
		var value string
		if value, err = s.commitAnonymous(ctx, &rec, s.now(), epoch); err == nil {
			stored = rec
			s.recent.markSession(rec.Key, wroteRecord, value)
		}
	} else {
		stored, err = s.rotateUser(ctx, r, old, epoch)
	}
	if err != nil {
		s.recent.markSession(rec.Key, wroteUnknown, "")
		if r.Old != (cloakroom.Key{}) {
			s.recent.markSession(r.Old, wroteUnknown, "")
		}
		return cloakroom.Record{}, err
	}
	return stored, nil
}

// rotateUser runs rotateScript for r, whose old session, if any, belongs
// to the new session's user.
func (s *Store) rotateUser(ctx context.Context, r cloakroom.Rotation, old owner, epoch uint64) (cloakroom.Record, error) {
	rec := r.New
	now := s.now()
	pointer := s.pointerKey(rec.Key)
	pointerTTL := ttlMillis(pointerUntil(&rec), now)
	nowMicros := strconv.FormatInt(now.UnixMicro(), 10)
	claim, err := claimScript.Exec(ctx, s.client, []string{pointer}, []string{rec.UserID, pointerTTL, nowMicros}).AsInt64()
	if err != nil {
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: claim key: %w", rec.Key.Short(), err)
	}
	if claim == claimTaken {
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: key held by another owner: %w", rec.Key.Short(), cloakroom.ErrConflict)
	}
	stored := rec
	if r.Bump {
		stored.Generation++ // checked against the current one before the bump
	}
	value := string(encodeCompact(nil, &stored))
	var oldField, oldMessage string
	if old.kind != 0 {
		oldField, oldMessage = field(r.Old), endKeyMessage(r.Old)
	}
	reply, err := s.revoke(ctx, rotateScript,
		[]string{s.sessionsKey(rec.UserID), s.generationKey(rec.UserID)},
		[]string{oldField, boolArg(r.OldMustLive), field(rec.Key), strconv.FormatUint(rec.Generation, 10),
			boolArg(r.Bump), value, nowMicros, ttlMillis(rec.Expiry(), now), s.endsChannel(), oldMessage,
			rec.UserID, strconv.Itoa(keyTailLen), strconv.FormatUint(r.OldVersion, 10), strconv.FormatUint(epoch, 10)},
	).ToArray()
	if err == nil && len(reply) < 2 {
		err = fmt.Errorf("script answered %d values, want at least 2", len(reply))
	}
	if err == nil && reply[0].IsInt64() && len(reply) < 3 {
		if code, _ := reply[0].AsInt64(); code == codeOK {
			err = fmt.Errorf("script answered %d values, want at least 3", len(reply))
		}
	}
	var code int64
	var gen uint64
	if err == nil {
		code, err = reply[0].AsInt64()
	}
	if err == nil {
		gen, err = reply[1].AsUint64()
	}
	if r.Bump {
		s.recent.markUser(rec.UserID, err == nil && code == codeOK, gen)
	}
	if err != nil {
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: %w", rec.Key.Short(), err)
	}
	if code != codeOK {
		if claim == claimCreated {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_ = dropPointerScript.Exec(cctx, s.client, []string{pointer}, []string{rec.UserID}).Error()
			cancel()
		}
		switch code {
		case codeGone:
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: old session is gone: %w", r.Old.Short(), cloakroom.ErrNotFound)
		case codeRevoked:
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: generation %d is not the user's current one (%d): %w", rec.Key.Short(), rec.Generation, gen, cloakroom.ErrNotFound)
		case codeConflict:
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: %w", rec.Key.Short(), cloakroom.ErrConflict)
		case codeMoved:
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: old session is not at version %d: %w", r.Old.Short(), r.OldVersion, cloakroom.ErrConflict)
		default:
			return cloakroom.Record{}, fmt.Errorf("redisstore: rotate to %s: unexpected script result %d", rec.Key.Short(), code)
		}
	}
	s.recent.markSession(rec.Key, wroteRecord, value)
	if old.kind != 0 {
		s.recent.markSession(r.Old, wroteDeletion, "")
		s.dropOldPointer(ctx, r.Old, old.userID)
	}
	var ended []string
	if n, _ := reply[2].AsInt64(); n == 1 {
		ended = append(ended, endKeyMessage(r.Old))
	}
	if r.Bump {
		s.dropPointers(ctx, rec.UserID, reply[3:])
		ended = append(ended, bumpMessage(rec.UserID, gen))
	}
	s.awaitRevocation(ended...)
	return stored, nil
}

// dropOldPointer removes a rotated session's pointer, as cleanup: its TTL
// does it later if this fails.
func (s *Store) dropOldPointer(ctx context.Context, key cloakroom.Key, userID string) {
	_ = dropPointerScript.Exec(ctx, s.client, []string{s.pointerKey(key)}, []string{userID}).Error()
}

// rotateAcross replaces a session that must live by one of another owner
// (an anonymous session renewed, or a session handed to another user):
// their keys are in different slots, so it creates the new session, then
// deletes the old one only if it still lives, and takes the new one back
// if not. The new token has not been handed out yet, so nobody can use the
// new session in between.
func (s *Store) rotateAcross(ctx context.Context, r cloakroom.Rotation, old owner, epoch uint64) (cloakroom.Record, error) {
	var stored cloakroom.Record
	var err error
	if r.New.UserID == "" {
		rec := r.New
		var value string
		if value, err = s.commitAnonymous(ctx, &rec, s.now(), epoch); err == nil {
			stored = rec
			s.recent.markSession(rec.Key, wroteRecord, value)
		}
	} else {
		stored, err = s.rotateUser(ctx, cloakroom.Rotation{New: r.New}, owner{}, epoch)
	}
	if err != nil {
		return cloakroom.Record{}, err
	}
	code, err := s.consume(ctx, r.Old, r.OldVersion, old, epoch)
	if err == nil && code == codeOK {
		s.recent.markSession(r.Old, wroteDeletion, "")
		s.awaitRevocation(endKeyMessage(r.Old))
		return stored, nil
	}
	if derr := s.Delete(context.WithoutCancel(ctx), r.New.Key); derr != nil {
		err = errors.Join(err, fmt.Errorf("taking back %s: %w", r.New.Key.Short(), derr))
	}
	switch {
	case err != nil:
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: %w", r.Old.Short(), err)
	case code == codeMoved:
		return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: old session is not at version %d: %w", r.Old.Short(), r.OldVersion, cloakroom.ErrConflict)
	}
	return cloakroom.Record{}, fmt.Errorf("redisstore: rotate %s: old session is gone: %w", r.Old.Short(), cloakroom.ErrNotFound)
}

// consume deletes a live session of the given owner, at version unless
// that is 0, and not below epoch. It answers codeOK, codeGone when the
// session was not live, or codeMoved, deleting nothing, when it is at
// another version.
func (s *Store) consume(ctx context.Context, key cloakroom.Key, version uint64, old owner, epoch uint64) (int64, error) {
	now := s.now()
	if old.kind == pointerAnonymous {
		return s.revoke(ctx, consumeAnonymousScript, []string{s.pointerKey(key)},
			[]string{"1", strconv.FormatInt(now.UnixMicro(), 10), s.endsChannel(), endKeyMessage(key), strconv.FormatUint(version, 10),
				strconv.FormatUint(epoch, 10)}).AsInt64()
	}
	reply, err := s.revoke(ctx, rotateScript,
		[]string{s.sessionsKey(old.userID), s.generationKey(old.userID)},
		[]string{field(key), "1", "", "0", "0", "", strconv.FormatInt(now.UnixMicro(), 10), "0", s.endsChannel(), endKeyMessage(key),
			old.userID, strconv.Itoa(keyTailLen), strconv.FormatUint(version, 10), strconv.FormatUint(epoch, 10)},
	).ToArray()
	if err != nil || len(reply) == 0 {
		return codeGone, err
	}
	code, err := reply[0].AsInt64()
	if err == nil && code == codeOK {
		s.dropOldPointer(ctx, key, old.userID)
	}
	return code, err
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
