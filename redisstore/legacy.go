package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

// The first key layout, used before the compact one (docs/redis-layout.md
// describes both). With the token hash as 64 hex digits H:
//
//	P{s:H}      hash: anonymous session (v, es, en, r) or pointer (u)
//	P{u:U}:s:H  hash: a user's session (v, g, es, en, p, r)
//	P{u:U}:i    sorted set of H for the user's sessions
//
// The generation counter P{u:U}:g is the same in both layouts. A Store
// reads these keys when a session is not in the compact layout, updates
// such sessions where they are, and deletes, lists and revokes them with
// the others, so an upgrade logs nobody out; once the longest absolute
// timeout has passed since the upgrade, none is left and
// Config.IgnoreLegacyLayout can skip the lookups.

// Legacy hash fields.
const (
	legacyFieldOwner  = "u"
	legacyFieldRecord = "r"
)

func (s *Store) legacyLookupKey(hexKey string) string { return s.prefix + "{s:" + hexKey + "}" }
func (s *Store) legacySessionKeyPrefix(userID string) string {
	return s.prefix + "{u:" + userID + "}:s:"
}
func (s *Store) legacySessionKey(userID, hexKey string) string {
	return s.legacySessionKeyPrefix(userID) + hexKey
}
func (s *Store) legacyIndexKey(userID string) string { return s.prefix + "{u:" + userID + "}:i" }

// legacyFind looks a session up in the first layout, through the cache
// when cached is set. It remembers nothing: such sessions only age out.
func (s *Store) legacyFind(ctx context.Context, key cloakroom.Key, cached bool) (findResult, error) {
	hexKey := key.String()
	lookup := s.legacyLookupKey(hexKey)
	cmd := s.client.B().Hmget().Key(lookup).Field(legacyFieldOwner, legacyFieldRecord)
	var res rueidis.RedisResult
	if cached {
		res = s.client.DoCache(ctx, cmd.Cache(), s.cacheTTL)
	} else {
		res = s.client.Do(ctx, cmd.Build())
	}
	fields, err := res.ToArray()
	if err == nil && len(fields) != 2 {
		err = fmt.Errorf("HMGET answered %d values, want 2", len(fields))
	}
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
	}
	if fields[0].IsNil() {
		if fields[1].IsNil() {
			return findResult{}, nil
		}
		return s.legacyResult(key, "", &fields[1], 0)
	}
	userID, err := fields[0].ToString()
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: owner: %w", key.Short(), err)
	}
	mark, marked := s.recent.user(userID, s.recent.now())
	sessionKey, generationKey := s.legacySessionKey(userID, hexKey), s.generationKey(userID)
	results := s.readWithGeneration(ctx, cached && (!marked || mark.known), sessionKey, legacyFieldRecord, generationKey)
	recMsg, err := results[0].ToMessage()
	if rueidis.IsRedisNil(err) {
		return findResult{}, nil
	}
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
	}
	gen, err := s.generationOf(results[1], mark.generation)
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: generation: %w", key.Short(), err)
	}
	return s.legacyResult(key, userID, &recMsg, gen)
}

func (s *Store) legacyResult(key cloakroom.Key, userID string, msg *rueidis.RedisMessage, gen uint64) (findResult, error) {
	blob, err := msg.ToString()
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
	}
	var rec cloakroom.Record
	if err := rec.UnmarshalBinary([]byte(blob)); err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
	}
	if rec.Key != key || rec.UserID != userID {
		return findResult{}, fmt.Errorf("redisstore: find %s: stored record names another session: %w", key.Short(), cloakroom.ErrBadRecord)
	}
	res := findResult{blob: blob}
	if !rec.Expired(s.now()) && (userID == "" || rec.Generation >= gen) {
		res.rec, res.live = rec, true
	}
	return res, nil
}

// legacyArgs holds what the first layout's commit scripts take.
type legacyArgs struct {
	version, record          string
	expirySec, expiryNano    string
	nowSec, nowNano          string
	sessionTTL               string // ms
	expiryCeil, pointerUntil string // Unix seconds, for the pointer deadline
	pointerTTL               string // ms
}

func newLegacyArgs(rec *cloakroom.Record, blob []byte, now time.Time) legacyArgs {
	expiry := rec.Expiry()
	until := expiry.Add(max(rec.IdleTimeout, 0))
	if until.After(rec.AbsoluteDeadline) {
		until = rec.AbsoluteDeadline
	}
	if until.Before(expiry) {
		until = expiry
	}
	return legacyArgs{
		version:      strconv.FormatUint(rec.Version, 10),
		record:       rueidis.BinaryString(blob),
		expirySec:    strconv.FormatInt(expiry.Unix(), 10),
		expiryNano:   strconv.Itoa(expiry.Nanosecond()),
		nowSec:       strconv.FormatInt(now.Unix(), 10),
		nowNano:      strconv.Itoa(now.Nanosecond()),
		sessionTTL:   ttlMillis(expiry, now),
		expiryCeil:   strconv.FormatInt(ceilUnix(expiry), 10),
		pointerUntil: strconv.FormatInt(ceilUnix(until), 10),
		pointerTTL:   ttlMillis(until, now),
	}
}

func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// legacyCommit writes rec in the first layout. The Store uses it to update
// sessions that live there; tests use it to create them.
func (s *Store) legacyCommit(ctx context.Context, rec cloakroom.Record) error {
	blob, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	a := newLegacyArgs(&rec, blob, s.now())
	hexKey := rec.Key.String()
	lookup := s.legacyLookupKey(hexKey)
	if rec.UserID == "" {
		code, err := legacyAnonCommitScript.Exec(ctx, s.client, []string{lookup},
			[]string{a.version, a.record, a.expirySec, a.expiryNano, a.nowSec, a.nowNano, a.sessionTTL},
		).AsInt64()
		if err != nil {
			return fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
		}
		return commitError(&rec, code)
	}
	claim := int64(claimReused)
	if rec.Version == 1 {
		claim, err = legacyClaimScript.Exec(ctx, s.client, []string{lookup},
			[]string{rec.UserID, a.pointerTTL, a.nowSec, a.nowNano}).AsInt64()
		if err != nil {
			return fmt.Errorf("redisstore: commit %s: claim key: %w", rec.Key.Short(), err)
		}
		if claim == claimTaken {
			return fmt.Errorf("redisstore: create %s: key held by another owner: %w", rec.Key.Short(), cloakroom.ErrConflict)
		}
	}
	reply, err := legacyUserCommitScript.Exec(ctx, s.client,
		[]string{s.legacySessionKey(rec.UserID, hexKey), s.generationKey(rec.UserID), s.legacyIndexKey(rec.UserID)},
		[]string{a.version, strconv.FormatUint(rec.Generation, 10), a.record,
			a.expirySec, a.expiryNano, a.nowSec, a.nowNano, a.sessionTTL,
			hexKey, strconv.FormatInt(rec.CreatedAt.UnixMilli(), 10),
			a.expiryCeil, a.pointerUntil},
	).AsIntSlice()
	if err == nil && len(reply) != 2 {
		err = fmt.Errorf("script answered %d values, want 2", len(reply))
	}
	if err != nil {
		return fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	code, extend := reply[0], reply[1] == 1
	if code != codeOK {
		if claim == claimCreated {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_ = legacyDropPointerScript.Exec(cctx, s.client, []string{lookup}, []string{rec.UserID}).Error()
			cancel()
		}
		return commitError(&rec, code)
	}
	if extend && claim != claimCreated {
		if err := legacyExtendPointerScript.Exec(ctx, s.client, []string{lookup}, []string{rec.UserID, a.pointerTTL}).Error(); err != nil {
			return fmt.Errorf("redisstore: commit %s: saved, but lengthening the lookup key's TTL failed, so the session may end early: %w", rec.Key.Short(), err)
		}
	}
	return nil
}

// legacyDelete removes a session of the first layout, if there is one:
// the session data before its pointer, so an interrupted delete leaves at
// worst an unused pointer. It reports whether it announced an end.
func (s *Store) legacyDelete(ctx context.Context, key cloakroom.Key) (bool, error) {
	hexKey := key.String()
	lookup := s.legacyLookupKey(hexKey)
	reply, err := legacyUnlinkTokenScript.Exec(ctx, s.client, []string{lookup}, []string{s.endsChannel(), endKeyMessage(key)}).ToMessage()
	if err != nil {
		return false, err
	}
	if reply.IsInt64() { // a bulk string is a user ID, even "1"
		n, _ := reply.AsInt64()
		return n == 1, nil // anonymous, now deleted, or no session at all
	}
	userID, err := reply.ToString()
	if err != nil {
		return false, err
	}
	n, err := legacyUserDeleteScript.Exec(ctx, s.client,
		[]string{s.legacySessionKey(userID, hexKey), s.legacyIndexKey(userID)},
		[]string{hexKey, s.endsChannel(), endKeyMessage(key)}).AsInt64()
	if err != nil {
		return false, err
	}
	return n == 1, legacyDropPointerScript.Exec(ctx, s.client, []string{lookup}, []string{userID}).Error()
}
