// Package redisstore is a [cloakroom.Store] on Redis (standalone, Sentinel
// or Cluster) through the rueidis client. Session checks are answered from
// rueidis' server-assisted client-side cache, so a hot [Store.Find] costs no
// round trip, and Redis invalidates every client's cached copy when any
// client writes, deletes or revokes the session.
//
// # Key layout
//
// With the prefix P (default "cloakroom:"), a session key as 64 hex digits
// H and a user ID U:
//
//	P{s:H}      lookup hash of one session, in a slot of its own:
//	              anonymous session: v (version), es/en (expiry), r (record)
//	              user session:      u (user ID), a pointer to P{u:U}:s:H
//	P{u:U}:s:H  a user's session: v, g (generation), es/en (expiry),
//	            p (pointer deadline), r (record from Record.MarshalBinary)
//	P{u:U}:g    the user's generation counter
//	P{u:U}:i    sorted set of H for the user's sessions, scored by creation (ms)
//
// Why this shape: Commit of a user's session checks the generation, checks
// the version, writes the record, indexes it and sets the TTLs in one Lua
// script, and BumpGeneration increments the generation and deletes every
// indexed session in another. Scripts may only touch keys of one hash slot,
// so a user's session, generation and index share the hash tag {u:U}. A
// token alone does not name its user, so the small pointer P{s:H} tells
// Find where the session lives. Anonymous sessions have neither generation
// nor index; they live whole in P{s:H}, spread over all slots instead of
// piling onto one cluster node under a shared tag.
//
// # Finding a session
//
// Find reads fields u and r of P{s:H}. For an anonymous session that is the
// record. For a user's session it then reads P{u:U}:s:H and P{u:U}:g in one
// DoMultiCache call (one slot, one node) and compares the generations in Go.
// Both steps use the cache with [Config.CacheTTL], so a hot check makes no
// round trip; a cold one makes one (anonymous) or two (user).
//
// The Store then remembers, per session key and within a memory budget,
// the owner, pinned rueidis commands for the reads, and the decoded record
// with the exact bytes it came from. The next Find of that key skips the
// pointer: it reads the session's record and the user's generation as two
// client-side cache hits, and reuses the decoded record when the cache
// answers with the same bytes (usually the same string, so the comparison is
// a pointer check). Nothing is answered from that memory alone: every Find
// still reads both keys through the cache Redis invalidates, and compares
// the generations. The owner is safe to reuse because a key's pointer is
// claimed before its session is written, outlives it, and never moves to
// another owner while the session lives; when the remembered session is
// gone, Find does the full lookup. A hot check of a user's session costs
// about 1µs and one 8-byte allocation (rueidis' cache key), against 4-5µs
// and 18 allocations reading the pointer and decoding each time.
//
// # Revocation and stale caches
//
// BumpGeneration increments the generation and deletes every indexed session
// of the user in one script. Redis then pushes an invalidation (RESP3 client
// tracking) to every connection that cached one of those keys, and rueidis
// drops the entries. Until the push arrives, another client may still answer
// from its cache. The window is one network hop plus the time until the
// client's connection reader runs: on loopback the push had usually arrived
// before the writer's call even returned, and the worst seen was about 1ms,
// or 5ms under the race detector on an overloaded two-CPU machine, where
// the reader goroutine waited for the scheduler (TestInvalidationAcrossClients
// logs the figures). The same holds for Delete and Commit. When a connection breaks rueidis
// discards its cache, so a lost invalidation cannot leave an entry behind;
// CacheTTL bounds every entry's life regardless.
//
// Within one Store a write is visible to its own Find at once, although the
// push for an entry cached on one connection can arrive after the reply to
// a write sent on another. For a second after a write the Store remembers
// what it wrote: the exact record after a Commit, "nothing" after a Delete,
// the new generation after BumpGeneration. A cached answer that disagrees
// (an older record, a record where a Delete left none) is replaced by a
// read from Redis; a cached generation is raised to the one the bump
// returned. After a write whose outcome is unknown (an error), Find reads
// that session or user from Redis for the second. So the first requests
// after a login are still served from the cache as soon as it holds the
// new session.
//
// # Expiry
//
// Every expiry decision uses [Config.Now]: Find and List compare records
// with it, and the scripts receive it as an argument. Redis TTLs only clean
// up. A session lives in Redis until its expiry plus one minute (measured
// from Now, so a server clock that differs does not matter); its lookup
// pointer up to one idle timeout longer, never past the absolute deadline,
// so that a Commit lengthens the pointer, and invalidates cached pointers,
// at most once per idle timeout; an index as long as its longest session.
// Generation counters never expire: Generation must never go backwards. A
// counter exists only for a user who was bumped at least once.
//
// # Owners
//
// A session key belongs to one owner (a user, or nobody) for its whole life.
// A Commit that changes the UserID of an existing session, such as an
// anonymous session promoted in place at login, fails with an error that is
// neither [cloakroom.ErrConflict] nor [cloakroom.ErrNotFound]: issue a new
// token at login instead. Creating a key whose pointer to a dead session of
// another owner has not been cleaned up yet fails with ErrConflict; keys
// are hashes of random tokens, so only a reused token can do that.
//
// # Failures
//
// A command on a broken connection fails, and rueidis discards that
// connection's cache, so a Store never answers from a cache nobody can
// invalidate any more. rueidis then retries reads, by default until the
// context ends, and an HTTP request's context has no deadline: while Redis
// is unreachable, session checks would wait instead of failing. Give the
// client a RetryDelay that gives up, as the gateway's store URLs do (three
// retries within 350ms), or bound the contexts. On a silent partition (no
// reset), cache hits are served until the connection's background PING,
// sent after a second without replies, goes unanswered for the client's
// ConnWriteTimeout (10s by default): about 11s in all.
//
// # Requirements
//
// Redis 6.0 or later with RESP3 for caching (the client's DisableCache
// option turns caching off and everything else still works). The prefix
// must not contain '{' or '}'. A user ID may contain anything: a '}' inside
// it shortens the hash tag, but identically for all of that user's keys, so
// they still share a slot. The user scripts reach session hashes listed in
// the index without naming them in KEYS; they are in the script's own slot,
// which Redis Cluster permits.
package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

// Defaults for Config fields left zero.
const (
	DefaultPrefix   = "cloakroom:"
	DefaultCacheTTL = time.Minute
)

// ttlMargin keeps a key in Redis a little past the instant the store's clock
// declares it dead, so a skew between that clock and Redis' never drops a
// live session.
const ttlMargin = time.Minute

// maxKeyTTL caps Redis TTLs so that far-future deadlines cannot overflow.
const maxKeyTTL = 100 * 365 * 24 * time.Hour

// cleanupTimeout bounds the best-effort cleanup a call performs after its
// own context was canceled.
const cleanupTimeout = 2 * time.Second

// Hash fields.
const (
	fieldOwner  = "u"
	fieldRecord = "r"
)

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// Prefix starts every key. It must not contain '{' or '}'.
	// Default: "cloakroom:".
	Prefix string
	// Now is the store's clock; every expiry decision uses it.
	// Default: time.Now.
	Now func() time.Time
	// CacheTTL is the longest a session check is served from the
	// client-side cache (Redis invalidates entries long before, on any
	// write). 0 means the default of one minute; a negative value turns
	// caching off so every Find asks Redis.
	CacheTTL time.Duration
}

// Store keeps sessions in Redis. It is safe for concurrent use.
type Store struct {
	client   rueidis.Client
	prefix   string
	now      func() time.Time
	cacheTTL time.Duration // <= 0: no client-side caching
	recent   *recentWrites
	found    *foundSessions
}

var _ interface {
	cloakroom.Store
	cloakroom.Pinger
} = (*Store)(nil)

// New returns a Store on client. The caller builds the client, and with it
// chooses TLS, pools and topology; the Store never closes it.
func New(client rueidis.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	s := &Store{
		client:   client,
		prefix:   cfg.Prefix,
		now:      cfg.Now,
		cacheTTL: cfg.CacheTTL,
		recent:   newRecentWrites(),
		found:    newFoundSessions(),
	}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if strings.ContainsAny(s.prefix, "{}") {
		return nil, fmt.Errorf("redisstore: prefix %q contains a brace, which would break the hash tags that keep a user's keys in one cluster slot", s.prefix)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cacheTTL == 0 {
		s.cacheTTL = DefaultCacheTTL
	}
	return s, nil
}

// Close releases nothing: the client belongs to the caller, who closes it
// after the Store is no longer used. Close exists so the Store can be
// handled like other stores.
func (s *Store) Close() error { return nil }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Do(ctx, s.client.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Key names; see the package documentation for the layout. Each is built
// in one concatenation, as Find builds three per call.

func (s *Store) lookupKey(hexKey string) string { return s.prefix + "{s:" + hexKey + "}" }
func (s *Store) sessionKeyPrefix(userID string) string {
	return s.prefix + "{u:" + userID + "}:s:"
}
func (s *Store) sessionKey(userID, hexKey string) string {
	return s.prefix + "{u:" + userID + "}:s:" + hexKey
}
func (s *Store) generationKey(userID string) string { return s.prefix + "{u:" + userID + "}:g" }
func (s *Store) indexKey(userID string) string      { return s.prefix + "{u:" + userID + "}:i" }

// Find implements [cloakroom.Store].
func (s *Store) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	if s.cacheTTL > 0 {
		since := s.recent.now()
		mark, marked := s.recent.session(key, since)
		if !marked || mark.kind != wroteUnknown {
			res, err := s.findCached(ctx, key, since)
			if err != nil {
				return cloakroom.Record{}, false, err
			}
			// A cached answer that does not show this Store's own write yet
			// predates it: ask Redis.
			if !marked || mark.accepts(res.blob) {
				return res.rec, res.live, nil
			}
		}
	}
	res, err := s.lookup(ctx, key, false, s.recent.now())
	return res.rec, res.live, err
}

// findResult is what a session lookup saw.
type findResult struct {
	rec  cloakroom.Record // valid when live
	live bool             // found, not expired, not revoked
	blob string           // the stored record, "" when there is none
}

// findCached answers from the client-side cache, through the remembered
// session when there is one. It is the hot path: for a remembered user's
// session it costs two cache hits and no allocation beyond rueidis' own.
// since is the recent-writes clock, read once per Find.
func (s *Store) findCached(ctx context.Context, key cloakroom.Key, since time.Duration) (findResult, error) {
	if e := s.found.get(key); e != nil {
		if e.userID == "" {
			fields, err := s.client.DoCache(ctx, e.read, s.cacheTTL).ToArray()
			if err == nil && len(fields) != 2 {
				err = fmt.Errorf("HMGET answered %d values, want 2", len(fields))
			}
			if err != nil {
				return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
			}
			if fields[0].IsNil() {
				if fields[1].IsNil() {
					s.found.forget(key)
					return findResult{}, nil
				}
				return s.result(key, "", &fields[1], 0, e)
			}
			// The key now points at a user's session: look it up afresh.
		} else if mark, marked := s.recent.user(e.userID, since); !marked || mark.known {
			res := s.client.DoCache(ctx, e.read, s.cacheTTL)
			recMsg, err := res.ToMessage()
			if err == nil {
				gen, err := s.generationOf(s.client.DoCache(ctx, e.generation, s.cacheTTL), mark.generation)
				if err != nil {
					return findResult{}, fmt.Errorf("redisstore: find %s: generation: %w", key.Short(), err)
				}
				return s.result(key, e.userID, &recMsg, gen, e)
			}
			if !rueidis.IsRedisNil(err) {
				return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
			}
			// The session is gone; the key may have been reused since.
			s.found.forget(key)
		}
	}
	return s.lookup(ctx, key, true, since)
}

// lookup finds a session from its lookup key, as described in the package
// documentation, reading through the client-side cache when cached is set
// and from Redis otherwise. A cached lookup remembers what it found.
func (s *Store) lookup(ctx context.Context, key cloakroom.Key, cached bool, since time.Duration) (findResult, error) {
	hexKey := key.String()
	lookupKey := s.lookupKey(hexKey)
	var res rueidis.RedisResult
	if cached {
		res = s.client.DoCache(ctx, s.client.B().Hmget().Key(lookupKey).Field(fieldOwner, fieldRecord).Cache(), s.cacheTTL)
	} else {
		res = s.client.Do(ctx, s.client.B().Hmget().Key(lookupKey).Field(fieldOwner, fieldRecord).Build())
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
		var e *foundSession
		if cached {
			e = &foundSession{read: s.client.B().Hmget().Key(lookupKey).Field(fieldOwner, fieldRecord).Cache().Pin()}
		}
		return s.result(key, "", &fields[1], 0, e)
	}
	userID, err := fields[0].ToString()
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: owner: %w", key.Short(), err)
	}

	sessionKey, generationKey := s.sessionKey(userID, hexKey), s.generationKey(userID)
	var results []rueidis.RedisResult
	mark, marked := s.recent.user(userID, since)
	if cached && (!marked || mark.known) {
		results = s.client.DoMultiCache(ctx,
			rueidis.CT(s.client.B().Hget().Key(sessionKey).Field(fieldRecord).Cache(), s.cacheTTL),
			rueidis.CT(s.client.B().Get().Key(generationKey).Cache(), s.cacheTTL))
	} else {
		cached = false // a bump of unknown outcome: its invalidation may be in flight
		results = s.client.DoMulti(ctx,
			s.client.B().Hget().Key(sessionKey).Field(fieldRecord).Build(),
			s.client.B().Get().Key(generationKey).Build())
	}
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
	var e *foundSession
	if cached {
		e = s.found.get(key)
		if e == nil || e.userID != userID {
			e = &foundSession{
				userID:     userID,
				read:       s.client.B().Hget().Key(sessionKey).Field(fieldRecord).Cache().Pin(),
				generation: s.client.B().Get().Key(generationKey).Cache().Pin(),
			}
		}
	}
	return s.result(key, userID, &recMsg, gen, e)
}

// generationOf reads a user's generation from the reply to GET, which is
// nil before the first bump, and raises it to atLeast, the generation a
// recent bump by this Store returned.
func (s *Store) generationOf(res rueidis.RedisResult, atLeast uint64) (uint64, error) {
	gen, err := res.AsUint64()
	if rueidis.IsRedisNil(err) {
		gen, err = 0, nil
	}
	return max(gen, atLeast), err
}

// result decodes a stored record, or reuses e's decoding of the same bytes,
// and reports whether it is still valid at the store's clock and not
// revoked by generation gen. When e is not nil, the outcome is remembered
// under key with e's owner and commands.
func (s *Store) result(key cloakroom.Key, userID string, msg *rueidis.RedisMessage, gen uint64, e *foundSession) (findResult, error) {
	blob, err := msg.ToString()
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
	}
	var rec cloakroom.Record
	if e != nil && e.blob == blob && e.blob != "" {
		// The same bytes, usually the very same cached string, which
		// makes the comparison a pointer check.
		rec = e.rec
	} else {
		raw, _ := msg.AsBytes() // shares blob's memory; the decoder copies what it keeps
		if err := rec.UnmarshalBinary(raw); err != nil {
			return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
		}
		if rec.Key != key || rec.UserID != userID {
			return findResult{}, fmt.Errorf("redisstore: find %s: stored record names another session: %w", key.Short(), cloakroom.ErrBadRecord)
		}
		// Find's callers share Data and may append to it: clipping makes
		// every append copy instead of writing into the shared array.
		rec.Data = rec.Data[:len(rec.Data):len(rec.Data)]
		if e != nil {
			s.found.put(key, &foundSession{userID: userID, read: e.read, generation: e.generation, blob: blob, rec: rec})
		}
	}
	res := findResult{blob: blob}
	if !rec.Expired(s.now()) && (userID == "" || rec.Generation >= gen) {
		res.rec, res.live = rec, true
	}
	return res, nil
}

// commitArgs holds what both commit paths pass to their scripts.
type commitArgs struct {
	version, record          string
	expirySec, expiryNano    string
	nowSec, nowNano          string
	sessionTTL               string // ms
	expiryCeil, pointerUntil string // Unix seconds, for the pointer deadline
	pointerTTL               string // ms
}

func newCommitArgs(rec *cloakroom.Record, blob []byte, now time.Time) commitArgs {
	expiry := rec.Expiry()
	// The pointer outlives the session by up to one idle timeout, so most
	// Commits need not lengthen it; it never outlives the absolute deadline.
	until := expiry.Add(max(rec.IdleTimeout, 0))
	if until.After(rec.AbsoluteDeadline) {
		until = rec.AbsoluteDeadline
	}
	if until.Before(expiry) {
		until = expiry
	}
	return commitArgs{
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

// ttlMillis is the Redis TTL of a key that must live until until, by a clock
// that now reads now.
func ttlMillis(until, now time.Time) string {
	d := min(max(until.Sub(now), 0), maxKeyTTL) + ttlMargin
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// Commit implements [cloakroom.Store].
func (s *Store) Commit(ctx context.Context, rec cloakroom.Record) error {
	if rec.Version == 0 {
		return fmt.Errorf("redisstore: commit %s: version 0; versions start at 1", rec.Key.Short())
	}
	blob, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	args := newCommitArgs(&rec, blob, s.now())
	if rec.UserID == "" {
		err = s.commitAnonymous(ctx, &rec, &args)
	} else {
		err = s.commitUser(ctx, &rec, &args)
	}
	if err != nil {
		// Even a refused Commit may have removed a dead session.
		s.recent.markSession(rec.Key, wroteUnknown, "")
	} else {
		s.recent.markSession(rec.Key, wroteRecord, args.record)
	}
	return err
}

func (s *Store) commitAnonymous(ctx context.Context, rec *cloakroom.Record, a *commitArgs) error {
	code, err := anonCommitScript.Exec(ctx, s.client,
		[]string{s.lookupKey(rec.Key.String())},
		[]string{a.version, a.record, a.expirySec, a.expiryNano, a.nowSec, a.nowNano, a.sessionTTL},
	).AsInt64()
	if err != nil {
		return fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	return commitError(rec, code)
}

// commitUser claims the lookup pointer first and then runs the atomic
// session script. A pointer without a session is harmless: Find and List
// see nothing, and its TTL removes it. The reverse order could leave a
// session that List shows but no token can reach.
func (s *Store) commitUser(ctx context.Context, rec *cloakroom.Record, a *commitArgs) error {
	hexKey := rec.Key.String()
	lookup := s.lookupKey(hexKey)
	claim := int64(claimReused)
	if rec.Version == 1 {
		var err error
		claim, err = claimScript.Exec(ctx, s.client, []string{lookup},
			[]string{rec.UserID, a.pointerTTL, a.nowSec, a.nowNano}).AsInt64()
		if err != nil {
			return fmt.Errorf("redisstore: commit %s: claim key: %w", rec.Key.Short(), err)
		}
		if claim == claimTaken {
			return fmt.Errorf("redisstore: create %s: key held by another owner: %w", rec.Key.Short(), cloakroom.ErrConflict)
		}
	}

	reply, err := userCommitScript.Exec(ctx, s.client,
		[]string{s.sessionKey(rec.UserID, hexKey), s.generationKey(rec.UserID), s.indexKey(rec.UserID)},
		[]string{a.version, strconv.FormatUint(rec.Generation, 10), a.record,
			a.expirySec, a.expiryNano, a.nowSec, a.nowNano, a.sessionTTL,
			hexKey, strconv.FormatInt(rec.CreatedAt.UnixMilli(), 10),
			a.expiryCeil, a.pointerUntil},
	).AsIntSlice()
	if err == nil && len(reply) != 2 {
		err = fmt.Errorf("script answered %d values, want 2", len(reply))
	}
	if err != nil {
		// Whether the script ran is unknown, so the pointer stays: it is
		// right if the session was written and harmless if not.
		return fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	code, extend := reply[0], reply[1] == 1

	if code != codeOK {
		if claim == claimCreated {
			// Nothing was written for this create; take the pointer back.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_ = dropPointerScript.Exec(cctx, s.client, []string{lookup}, []string{rec.UserID}).Error() // the pointer's TTL removes it if this fails
			cancel()
		}
		if code == codeGone && rec.Version > 1 {
			return s.goneOrForeign(ctx, rec, lookup)
		}
		return commitError(rec, code)
	}
	if extend && claim != claimCreated {
		if err := extendPointerScript.Exec(ctx, s.client, []string{lookup}, []string{rec.UserID, a.pointerTTL}).Error(); err != nil {
			return fmt.Errorf("redisstore: commit %s: saved, but lengthening the lookup key's TTL failed, so the session may end early: %w", rec.Key.Short(), err)
		}
	}
	return nil
}

// goneOrForeign explains a failed update of a user's session: either the
// session is gone, or the key belongs to another owner, which is a caller
// bug rather than a race.
func (s *Store) goneOrForeign(ctx context.Context, rec *cloakroom.Record, lookup string) error {
	owner, err := s.client.Do(ctx, s.client.B().Hmget().Key(lookup).Field(fieldOwner, fieldRecord).Build()).ToArray()
	if err == nil && len(owner) == 2 {
		holder, _ := owner[0].ToString()
		if holder != rec.UserID && (holder != "" || !owner[1].IsNil()) {
			return commitError(rec, codeForeign)
		}
	}
	return commitError(rec, codeGone)
}

// commitError turns a script code into Commit's error.
func commitError(rec *cloakroom.Record, code int64) error {
	short := rec.Key.Short()
	switch code {
	case codeOK:
		return nil
	case codeConflict:
		if rec.Version == 1 {
			return fmt.Errorf("redisstore: create %s: %w", short, cloakroom.ErrConflict)
		}
		return fmt.Errorf("redisstore: update %s from version %d: %w", short, rec.Version-1, cloakroom.ErrConflict)
	case codeGone:
		return fmt.Errorf("redisstore: update %s: %w", short, cloakroom.ErrNotFound)
	case codeRevoked:
		return fmt.Errorf("redisstore: commit %s: generation %d revoked: %w", short, rec.Generation, cloakroom.ErrNotFound)
	case codeForeign:
		return fmt.Errorf("redisstore: commit %s: the session belongs to another owner than %q; a key cannot change owner, issue a new token instead", short, rec.UserID)
	default:
		return fmt.Errorf("redisstore: commit %s: unexpected script result %d", short, code)
	}
}

// Delete implements [cloakroom.Store]. A user's session is deleted before
// its lookup pointer, so an interrupted Delete leaves at worst an unused
// pointer, never a listed session.
func (s *Store) Delete(ctx context.Context, key cloakroom.Key) (err error) {
	hexKey := key.String()
	lookup := s.lookupKey(hexKey)
	s.found.forget(key)
	defer func() {
		if err != nil {
			s.recent.markSession(key, wroteUnknown, "")
		} else {
			s.recent.markSession(key, wroteDeletion, "")
		}
	}()
	userID, err := unlinkTokenScript.Exec(ctx, s.client, []string{lookup}, nil).ToString()
	if rueidis.IsRedisNil(err) {
		return nil // anonymous, now deleted, or no session at all
	}
	if err != nil {
		return fmt.Errorf("redisstore: delete %s: %w", key.Short(), err)
	}
	err = userDeleteScript.Exec(ctx, s.client,
		[]string{s.sessionKey(userID, hexKey), s.indexKey(userID)}, []string{hexKey}).Error()
	if err != nil {
		return fmt.Errorf("redisstore: delete %s: %w", key.Short(), err)
	}
	if err := dropPointerScript.Exec(ctx, s.client, []string{lookup}, []string{userID}).Error(); err != nil {
		return fmt.Errorf("redisstore: delete %s: lookup key: %w", key.Short(), err)
	}
	return nil
}

// List implements [cloakroom.Store].
func (s *Store) List(ctx context.Context, userID string) ([]cloakroom.Record, error) {
	if userID == "" {
		return nil, nil // anonymous sessions have no index
	}
	reply, err := listScript.Exec(ctx, s.client,
		[]string{s.indexKey(userID), s.generationKey(userID)},
		[]string{s.sessionKeyPrefix(userID)},
	).ToArray()
	if err == nil && len(reply) == 0 {
		err = errors.New("script answered nothing")
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: %w", err)
	}
	gen, err := reply[0].AsUint64()
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: generation: %w", err)
	}
	now := s.now()
	var out []cloakroom.Record
	for i := range reply[1:] {
		blob, err := reply[1+i].AsBytes()
		if err != nil {
			return nil, fmt.Errorf("redisstore: list: %w", err)
		}
		var rec cloakroom.Record
		if err := rec.UnmarshalBinary(blob); err != nil {
			return nil, fmt.Errorf("redisstore: list: %w", err)
		}
		if rec.UserID != userID {
			return nil, fmt.Errorf("redisstore: list: session %s names another user: %w", rec.Key.Short(), cloakroom.ErrBadRecord)
		}
		if !rec.Expired(now) && rec.Generation >= gen {
			out = append(out, rec)
		}
	}
	// The index is ordered by whole milliseconds; this settles ties the
	// way every store does.
	slices.SortStableFunc(out, func(a, b cloakroom.Record) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Handle, b.Handle)
	})
	return out, nil
}

// Generation implements [cloakroom.Store]. It always asks Redis: a login
// reads it once, and a cached value could lag behind a bump.
func (s *Store) Generation(ctx context.Context, userID string) (uint64, error) {
	gen, err := s.client.Do(ctx, s.client.B().Get().Key(s.generationKey(userID)).Build()).AsUint64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: generation: %w", err)
	}
	return gen, nil
}

// BumpGeneration implements [cloakroom.Store]. It deletes the user's
// sessions in the same script that increments the generation, then removes
// their lookup pointers; the pointers are only cleanup, so failing to remove
// them is not an error (their TTL does it later).
func (s *Store) BumpGeneration(ctx context.Context, userID string) (uint64, error) {
	reply, err := bumpScript.Exec(ctx, s.client,
		[]string{s.generationKey(userID), s.indexKey(userID)},
		[]string{s.sessionKeyPrefix(userID)},
	).ToArray()
	if err == nil && len(reply) == 0 {
		err = errors.New("script answered nothing")
	}
	var gen uint64
	if err == nil {
		gen, err = reply[0].AsUint64()
	}
	// Find raises every cached generation of the user to gen for a while;
	// after a failure it reads the user's keys from Redis instead.
	s.recent.markUser(userID, err == nil, gen)
	if err != nil {
		return 0, fmt.Errorf("redisstore: bump generation: %w", err)
	}
	if len(reply) > 1 {
		drops := make([]rueidis.LuaExec, 0, len(reply)-1)
		for _, m := range reply[1:] {
			hexKey, err := m.ToString()
			if err != nil {
				continue
			}
			drops = append(drops, rueidis.LuaExec{Keys: []string{s.lookupKey(hexKey)}, Args: []string{userID}})
		}
		dropPointerScript.ExecMulti(ctx, s.client, drops...)
	}
	return gen, nil
}
