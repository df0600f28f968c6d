// Package redisstore is a [cloakroom.Store] on Redis (standalone, Sentinel
// or Cluster) through the rueidis client. Session checks are answered from
// rueidis' server-assisted client-side cache, so a warm [Store.Find] makes
// no round trip, and Redis invalidates every client's cached copy when any
// client writes, deletes or revokes the session.
//
// Each session costs one pointer key (token hash to owner) and one field in
// its user's session hash, which is also the user's index; every script
// that checks or changes a user's sessions touches only keys under the
// user's hash tag, so it runs on one Redis Cluster node. Sessions end by
// their deadlines (checked against [Config.Now]) and Redis TTLs clean up.
// Delete, BumpGeneration, BumpEpoch and Rotate announce the sessions they
// end on a pub/sub channel ([Store.WatchEnds]). The global epoch is a
// counter in a slot of its own: each Store keeps the epoch it knows in
// memory, kept current by those announcements and its heartbeats, and
// compares every session with it. Auxiliary records are keys of their
// own, with Redis TTLs.
//
// docs/redis-layout.md describes the key layout, the caching and its
// guarantees, the global epoch, the auxiliary records, and failures.
package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/storerules"
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
	// CacheLease bounds how long after a revoking call (Delete,
	// BumpGeneration, BumpEpoch, Rotate, and so every logout and
	// revocation) returns any Store might still answer the revoked session
	// from its cache: the call waits this long before returning, and a
	// Store whose heartbeats stop coming back through Redis stops trusting
	// its cache after this long, and asks Redis. Every Store sharing the
	// Redis must use the same value. 0 means the default of 250ms; it is
	// ignored when CacheTTL is negative (no caching, no wait).
	CacheLease time.Duration
	// ReplicaAcks is how many replicas must have a revocation (Delete,
	// BumpGeneration, BumpEpoch, Rotate) before it returns, checked with
	// Redis' WAIT on the master that ran it. With replicas (Cluster,
	// Sentinel) set it to 1 or more: replication is asynchronous, and a
	// failover right after a revocation can otherwise promote a replica
	// that never saw it, bringing the session back. A revocation the
	// replicas do not acknowledge within ReplicaTimeout fails. Default 0:
	// no wait.
	ReplicaAcks int
	// ReplicaTimeout bounds the wait for ReplicaAcks. Default 1s.
	ReplicaTimeout time.Duration
}

// Store keeps sessions in Redis. It is safe for concurrent use.
type Store struct {
	client   rueidis.Client
	prefix   string
	now      func() time.Time
	cacheTTL time.Duration // <= 0: no client-side caching
	// cacheLease and lease: see lease.go; watcher: see ends.go.
	cacheLease     time.Duration
	replicaAcks    int
	replicaTimeout time.Duration
	lease          lease
	watcher        *watcher
	recent         *recentWrites
	found          *foundSessions
	// knownEpoch is the highest global epoch this Store has seen: raised
	// by BumpEpoch, by the ends channel, by the heartbeat through the
	// epoch's node, and by every read of the epoch from Redis.
	knownEpoch atomic.Uint64
	epochName  string // epochKey, built once: it is read without the lease on every Find
}

var _ interface {
	cloakroom.Store
	cloakroom.Pinger
} = (*Store)(nil)

// New returns a Store on client. The caller builds the client, and with it
// chooses TLS, pools and topology; the Store never closes it. It subscribes
// to the Store's channel and, with caching on, waits up to CacheLease for
// its first heartbeat to come back (see Config.CacheLease).
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
	s.epochName = s.prefix + "epoch"
	if s.now == nil {
		s.now = time.Now
	}
	if s.cacheTTL == 0 {
		s.cacheTTL = DefaultCacheTTL
	}
	s.cacheLease = cfg.CacheLease
	if s.cacheLease <= 0 {
		s.cacheLease = DefaultCacheLease
	}
	s.replicaAcks, s.replicaTimeout = cfg.ReplicaAcks, cfg.ReplicaTimeout
	if s.replicaTimeout <= 0 {
		s.replicaTimeout = DefaultReplicaTimeout
	}
	s.startWatcher()
	if s.cacheTTL > 0 {
		// Serving from the cache starts with the first heartbeat round;
		// give it a lease's time, so that the first requests are warm.
		select {
		case <-s.watcher.started:
		case <-time.After(s.cacheLease):
		}
	}
	return s, nil
}

// Close stops the Store's subscription and heartbeats; they also stop when
// the client is closed. The client belongs to the caller, who closes it
// after the Store is no longer used.
func (s *Store) Close() error {
	s.watcher.stop()
	return nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Do(ctx, s.client.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Key names. With the prefix P, a session key K (its 32 raw bytes) and a
// user ID U:
//
//	P{K}     pointer: "u" + U for a user's session, "a" + record for an
//	         anonymous one
//	P{u:U}:s the user's sessions: field K's first 30 bytes, value the record
//	P{u:U}:g the user's generation counter
//	Pepoch   the global epoch counter, in a slot of its own
//	Px:K     the auxiliary record under K (see aux.go)
//
// Each is built in one concatenation, as Find builds two per cold call.

func (s *Store) pointerKey(key cloakroom.Key) string { return s.prefix + "{" + string(key[:]) + "}" }
func (s *Store) sessionsKey(userID string) string    { return s.prefix + "{u:" + userID + "}:s" }
func (s *Store) generationKey(userID string) string  { return s.prefix + "{u:" + userID + "}:g" }
func (s *Store) epochKey() string                    { return s.epochName }
func (s *Store) auxKey(key cloakroom.Key) string     { return s.prefix + "x:" + string(key[:]) }
func field(key cloakroom.Key) string                 { return string(key[:fieldLen]) }

// Pointer kinds, the first byte of a pointer's value.
const (
	pointerUser      = 'u'
	pointerAnonymous = 'a'
)

// Find implements [cloakroom.Store].
func (s *Store) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	if since := s.recent.now(); s.cacheTTL > 0 && s.lease.valid(since) {
		mark, marked := s.recent.session(key, since)
		if !marked || mark.kind != wroteUnknown {
			// Under the lease, every epoch bump that returned has reached
			// this Store (see lease).
			res, err := s.findCached(ctx, key, since, s.knownEpoch.Load())
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
	res, err := s.lookup(ctx, key, false, s.recent.now(), 0)
	return res.rec, res.live, err
}

// findResult is what a session lookup saw.
type findResult struct {
	rec  cloakroom.Record // valid when live
	live bool             // found, not expired, not revoked
	blob string           // the stored value, "" when there is none
}

// findCached answers from the client-side cache, through the remembered
// session when there is one. It is the hot path: for a remembered user's
// session it costs two cache hits and no allocation beyond rueidis' own.
// since is the recent-writes clock, read once per Find; epoch is the
// global epoch this Store trusts.
func (s *Store) findCached(ctx context.Context, key cloakroom.Key, since time.Duration, epoch uint64) (findResult, error) {
	if e := s.found.get(key); e != nil {
		if e.userID == "" {
			msg, err := s.client.DoCache(ctx, e.read, s.cacheTTL).ToMessage()
			if rueidis.IsRedisNil(err) {
				s.found.forget(key)
				return findResult{}, nil
			}
			if err != nil {
				return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
			}
			if v, _ := msg.ToString(); len(v) > 0 && v[0] == pointerAnonymous {
				return s.result(key, "", v, 0, epoch, e)
			}
			// The key now points at a user's session: look it up afresh.
		} else if mark, marked := s.recent.user(e.userID, since); !marked || mark.known {
			recMsg, err := s.client.DoCache(ctx, e.read, s.cacheTTL).ToMessage()
			if err == nil {
				gen, err := s.generationOf(s.client.DoCache(ctx, e.generation, s.cacheTTL), mark.generation)
				if err != nil {
					return findResult{}, fmt.Errorf("redisstore: find %s: generation: %w", key.Short(), err)
				}
				blob, _ := recMsg.ToString()
				return s.result(key, e.userID, blob, gen, epoch, e)
			}
			if !rueidis.IsRedisNil(err) {
				return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
			}
			// The session is gone; the key may have been reused since.
			s.found.forget(key)
		}
	}
	return s.lookup(ctx, key, true, since, epoch)
}

// lookup finds a session from its pointer, reading through the client-side
// cache when cached is set, with the trusted epoch given, and from Redis
// otherwise, the epoch too. A cached lookup remembers what it found.
func (s *Store) lookup(ctx context.Context, key cloakroom.Key, cached bool, since time.Duration, epoch uint64) (findResult, error) {
	pointer := s.pointerKey(key)
	var v string
	var found bool
	var err error
	if cached {
		v, err = s.client.DoCache(ctx, s.client.B().Get().Key(pointer).Cache(), s.cacheTTL).ToString()
		found = err == nil
		if rueidis.IsRedisNil(err) {
			err = nil
		}
	} else {
		v, found, epoch, err = s.getWithEpoch(ctx, pointer)
	}
	if err != nil {
		return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
	}
	if !found {
		return findResult{}, nil
	}
	if len(v) > 0 && v[0] == pointerAnonymous {
		var e *foundSession
		if cached {
			e = &foundSession{read: s.client.B().Get().Key(pointer).Cache().Pin()}
		}
		return s.result(key, "", v, 0, epoch, e)
	}
	if len(v) == 0 || v[0] != pointerUser {
		return findResult{}, fmt.Errorf("redisstore: find %s: pointer of unknown kind: %w", key.Short(), cloakroom.ErrBadRecord)
	}
	userID := v[1:]

	sessions, generation := s.sessionsKey(userID), s.generationKey(userID)
	mark, marked := s.recent.user(userID, since)
	// Not after a bump of unknown outcome: its invalidation may be in flight.
	cached = cached && (!marked || mark.known)
	results := s.readWithGeneration(ctx, cached, sessions, field(key), generation)
	blob, err := results[0].ToString()
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
				read:       s.client.B().Hget().Key(sessions).Field(field(key)).Cache().Pin(),
				generation: s.client.B().Get().Key(generation).Cache().Pin(),
			}
		}
	}
	return s.result(key, userID, blob, gen, epoch, e)
}

// getWithEpoch reads key and the global epoch from Redis (not the cache),
// in parallel. found is false, with a nil error, when key does not exist.
func (s *Store) getWithEpoch(ctx context.Context, key string) (value string, found bool, epoch uint64, err error) {
	res := s.client.DoMulti(ctx, s.client.B().Get().Key(key).Build(), s.client.B().Get().Key(s.epochKey()).Build())
	value, err = res[0].ToString()
	if rueidis.IsRedisNil(err) {
		return "", false, 0, nil
	}
	if err != nil {
		return "", false, 0, err
	}
	if epoch, err = s.epochOf(res[1]); err != nil {
		return "", false, 0, err
	}
	return value, true, epoch, nil
}

// readWithGeneration reads one field of a user's hash and the user's
// generation in one round trip, through the client-side cache when cached.
func (s *Store) readWithGeneration(ctx context.Context, cached bool, hash, hashField, generation string) []rueidis.RedisResult {
	if cached {
		return s.client.DoMultiCache(ctx,
			rueidis.CT(s.client.B().Hget().Key(hash).Field(hashField).Cache(), s.cacheTTL),
			rueidis.CT(s.client.B().Get().Key(generation).Cache(), s.cacheTTL))
	}
	return s.client.DoMulti(ctx,
		s.client.B().Hget().Key(hash).Field(hashField).Build(),
		s.client.B().Get().Key(generation).Build())
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

// result decodes a stored value (an anonymous pointer's, with its kind
// byte, or a user's record), or reuses e's decoding of the same bytes, and
// reports whether it is still valid at the store's clock and not revoked by
// generation gen or the global epoch. When e is not nil, the outcome is
// remembered under key with e's owner and commands.
func (s *Store) result(key cloakroom.Key, userID string, blob string, gen, epoch uint64, e *foundSession) (findResult, error) {
	var rec cloakroom.Record
	if e != nil && e.blob == blob && e.blob != "" {
		// The same bytes, usually the very same cached string, which
		// makes the comparison a pointer check.
		rec = e.rec
	} else {
		raw := blob
		if userID == "" {
			raw = raw[1:] // the pointer's kind
		}
		var err error
		rec, err = decodeCompact([]byte(raw), key, userID)
		if err != nil {
			return findResult{}, fmt.Errorf("redisstore: find %s: %w", key.Short(), err)
		}
		// Find's callers share Data and may append to it: clipping makes
		// every append copy instead of writing into the shared array.
		rec.Data = rec.Data[:len(rec.Data):len(rec.Data)]
		if e != nil {
			s.found.put(key, &foundSession{userID: userID, read: e.read, generation: e.generation, blob: blob, rec: rec})
		}
	}
	res := findResult{blob: blob}
	if !rec.Expired(s.now()) && rec.Epoch >= epoch && (userID == "" || rec.Generation >= gen) {
		res.rec, res.live = rec, true
	}
	return res, nil
}

// ttlMillis is the Redis TTL of a key that must live until until, by a clock
// that now reads now.
func ttlMillis(until, now time.Time) string {
	d := min(max(until.Sub(now), 0), maxKeyTTL) + ttlMargin
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

// pointerUntil is how long a user's pointer must live: as long as the
// session can, so its absolute deadline (or its expiry, if that is later).
func pointerUntil(rec *cloakroom.Record) time.Time {
	if e := rec.Expiry(); e.After(rec.AbsoluteDeadline) {
		return e
	}
	return rec.AbsoluteDeadline
}

// Commit implements [cloakroom.Store].
func (s *Store) Commit(ctx context.Context, rec cloakroom.Record) error {
	if rec.Version == 0 {
		return fmt.Errorf("redisstore: commit %s: version 0; versions start at 1", rec.Key.Short())
	}
	stored, err := s.commit(ctx, &rec)
	if err != nil {
		// Even a refused Commit may have removed a dead session.
		s.recent.markSession(rec.Key, wroteUnknown, "")
	} else {
		s.recent.markSession(rec.Key, wroteRecord, stored)
	}
	return err
}

// commit writes rec between two checks of its epoch. The scripts cannot
// read the epoch, which lives in another slot: the first check fails
// early, and the second catches a bump that ran meanwhile, which left what
// the script wrote unreachable.
func (s *Store) commit(ctx context.Context, rec *cloakroom.Record) (string, error) {
	epoch, err := s.checkEpoch(ctx, rec.Epoch)
	if err != nil {
		return "", fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	var stored string
	if rec.UserID == "" {
		stored, err = s.commitAnonymous(ctx, rec, s.now(), epoch)
	} else {
		stored, err = s.commitUser(ctx, rec, s.now(), epoch)
	}
	if err != nil {
		return "", err
	}
	if _, err := s.checkEpoch(ctx, rec.Epoch); err != nil {
		return "", fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	return stored, nil
}

// commitAnonymous runs anonCommitScript; epoch is the one the Store
// trusts, below which a stored session is dead.
func (s *Store) commitAnonymous(ctx context.Context, rec *cloakroom.Record, now time.Time, epoch uint64) (string, error) {
	value := string(encodeCompact([]byte{pointerAnonymous}, rec))
	version := strconv.FormatUint(rec.Version, 10)
	code, err := anonCommitScript.Exec(ctx, s.client,
		[]string{s.pointerKey(rec.Key)},
		[]string{version, value, strconv.FormatInt(now.UnixMicro(), 10), ttlMillis(rec.Expiry(), now), strconv.FormatUint(epoch, 10)},
	).AsInt64()
	if err != nil {
		return "", fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	return value, commitError(rec, code)
}

// commitUser claims the pointer first and then runs the atomic session
// script. A pointer without a session is harmless: Find and List see
// nothing, and its TTL removes it. The reverse order could leave a session
// that List shows but no token can reach. epoch is as for commitAnonymous.
func (s *Store) commitUser(ctx context.Context, rec *cloakroom.Record, now time.Time, epoch uint64) (string, error) {
	pointer := s.pointerKey(rec.Key)
	nowMicros := strconv.FormatInt(now.UnixMicro(), 10)
	pointerTTL := ttlMillis(pointerUntil(rec), now)
	claim := int64(claimReused)
	if rec.Version == 1 {
		var err error
		claim, err = claimScript.Exec(ctx, s.client, []string{pointer},
			[]string{rec.UserID, pointerTTL, nowMicros}).AsInt64()
		if err != nil {
			return "", fmt.Errorf("redisstore: commit %s: claim key: %w", rec.Key.Short(), err)
		}
		if claim == claimTaken {
			return "", fmt.Errorf("redisstore: create %s: key held by another owner: %w", rec.Key.Short(), cloakroom.ErrConflict)
		}
	}

	value := string(encodeCompact(nil, rec))
	reply, err := userCommitScript.Exec(ctx, s.client,
		[]string{s.sessionsKey(rec.UserID), s.generationKey(rec.UserID)},
		[]string{field(rec.Key), strconv.FormatUint(rec.Version, 10), strconv.FormatUint(rec.Generation, 10),
			value, nowMicros, ttlMillis(rec.Expiry(), now), strconv.FormatInt(rec.AbsoluteDeadline.UnixMicro(), 10),
			strconv.FormatUint(epoch, 10)},
	).AsIntSlice()
	if err == nil && len(reply) != 2 {
		err = fmt.Errorf("script answered %d values, want 2", len(reply))
	}
	if err != nil {
		// Whether the script ran is unknown, so the pointer stays: it is
		// right if the session was written and harmless if not.
		return "", fmt.Errorf("redisstore: commit %s: %w", rec.Key.Short(), err)
	}
	code, extend := reply[0], reply[1] == 1

	if code != codeOK {
		if claim == claimCreated {
			// Nothing was written for this create; take the pointer back.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_ = dropPointerScript.Exec(cctx, s.client, []string{pointer}, []string{rec.UserID}).Error() // the pointer's TTL removes it if this fails
			cancel()
		}
		if code == codeGone && rec.Version > 1 {
			return "", s.goneElsewhere(ctx, rec, pointer)
		}
		return "", commitError(rec, code)
	}
	if extend {
		if err := extendPointerScript.Exec(ctx, s.client, []string{pointer}, []string{rec.UserID, pointerTTL}).Error(); err != nil {
			return "", fmt.Errorf("redisstore: commit %s: saved, but lengthening the pointer's TTL failed, so the session may end early: %w", rec.Key.Short(), err)
		}
	}
	return value, nil
}

// goneElsewhere explains a failed update of a user's session: the key may
// belong to another owner, which is a caller bug rather than a race, or
// the session is gone.
func (s *Store) goneElsewhere(ctx context.Context, rec *cloakroom.Record, pointer string) error {
	v, err := s.client.Do(ctx, s.client.B().Get().Key(pointer).Build()).ToString()
	if err == nil && v != string(pointerUser)+rec.UserID {
		return commitError(rec, codeForeign)
	}
	return commitError(rec, codeGone)
}

// commitError turns a script code into Commit's error.
func commitError(rec *cloakroom.Record, code int64) error {
	short := rec.Key.Short()
	switch code {
	case codeOK, codeConflict, codeGone:
		return versionError(short, rec.Version, code)
	case codeRevoked:
		return fmt.Errorf("redisstore: commit %s: generation %d revoked: %w", short, rec.Generation, cloakroom.ErrNotFound)
	case codeForeign:
		return fmt.Errorf("redisstore: commit %s: the session belongs to another owner than %q; a key cannot change owner, issue a new token instead", short, rec.UserID)
	default:
		return fmt.Errorf("redisstore: commit %s: unexpected script result %d", short, code)
	}
}

// versionError turns the code of a versioned write of what (a session's
// or a record's short key) at version into its error: nil for codeOK,
// ErrConflict for codeConflict, ErrNotFound for codeGone.
func versionError(what string, version uint64, code int64) error {
	switch code {
	case codeOK:
		return nil
	case codeConflict:
		if version == 1 {
			return fmt.Errorf("redisstore: create %s: %w", what, cloakroom.ErrConflict)
		}
		return fmt.Errorf("redisstore: update %s from version %d: %w", what, version-1, cloakroom.ErrConflict)
	case codeGone:
		return fmt.Errorf("redisstore: update %s: %w", what, cloakroom.ErrNotFound)
	default:
		return fmt.Errorf("redisstore: commit %s: unexpected script result %d", what, code)
	}
}

// Delete implements [cloakroom.Store]. A user's session is deleted before
// its pointer, so an interrupted Delete leaves at worst an unused pointer,
// never a listed session.
func (s *Store) Delete(ctx context.Context, key cloakroom.Key) (err error) {
	s.found.forget(key)
	defer func() {
		if err != nil {
			s.recent.markSession(key, wroteUnknown, "")
		} else {
			s.recent.markSession(key, wroteDeletion, "")
		}
	}()
	published, err := s.delete(ctx, key)
	if published || err != nil { // after an error, an end may have been announced
		s.awaitRevocation(endKeyMessage(key))
	}
	if err != nil {
		return fmt.Errorf("redisstore: delete %s: %w", key.Short(), err)
	}
	return nil
}

// delete removes the session under key and reports whether it announced
// an end, which it does when it removed a session.
func (s *Store) delete(ctx context.Context, key cloakroom.Key) (bool, error) {
	pointer := s.pointerKey(key)
	channel, message := s.endsChannel(), endKeyMessage(key)
	reply, err := s.revoke(ctx, unlinkTokenScript, []string{pointer}, []string{channel, message}).ToMessage()
	if err != nil {
		return false, err
	}
	// An integer reply is the script's own answer; a bulk string is a user
	// ID, even one that reads as a number ("1").
	if reply.IsInt64() {
		n, _ := reply.AsInt64()
		return n == 1, nil // anonymous, now deleted, or no session at all
	}
	userID, err := reply.ToString()
	if err != nil {
		return false, err
	}
	n, err := s.revoke(ctx, userDeleteScript, []string{s.sessionsKey(userID)}, []string{field(key), channel, message}).AsInt64()
	if err != nil {
		return false, err
	}
	if err := dropPointerScript.Exec(ctx, s.client, []string{pointer}, []string{userID}).Error(); err != nil {
		return n == 1, fmt.Errorf("pointer: %w", err)
	}
	return n == 1, nil
}

// List implements [cloakroom.Store].
func (s *Store) List(ctx context.Context, userID string) ([]cloakroom.Record, error) {
	if userID == "" {
		return nil, nil // anonymous sessions have no index
	}
	epoch, err := s.currentEpoch(ctx)
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: %w", err)
	}
	now := s.now()
	reply, err := listScript.Exec(ctx, s.client,
		[]string{s.sessionsKey(userID), s.generationKey(userID)},
		[]string{strconv.FormatInt(now.UnixMicro(), 10), strconv.FormatUint(epoch, 10)},
	).ToArray()
	if err == nil && len(reply)%2 != 1 {
		err = fmt.Errorf("script answered %d values, want an odd number", len(reply))
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: %w", err)
	}
	gen, err := reply[0].AsUint64()
	if err != nil {
		return nil, fmt.Errorf("redisstore: list: generation: %w", err)
	}
	var out []cloakroom.Record
	for i := 1; i < len(reply); i += 2 {
		f, err1 := reply[i].ToString()
		blob, err2 := reply[i+1].AsBytes()
		if err := cmp.Or(err1, err2); err != nil {
			return nil, fmt.Errorf("redisstore: list: %w", err)
		}
		var rec cloakroom.Record
		if len(f) == fieldLen && len(blob) >= 2+keyTailLen {
			var key cloakroom.Key
			copy(key[copy(key[:], f):], blob[2:2+keyTailLen])
			rec, err = decodeCompact(blob, key, userID)
		} else {
			err = fmt.Errorf("field of %d bytes: %w", len(f), cloakroom.ErrBadRecord)
		}
		if err != nil {
			return nil, fmt.Errorf("redisstore: list: %w", err)
		}
		if !rec.Expired(now) && rec.Generation >= gen && rec.Epoch >= epoch {
			out = append(out, rec)
		}
	}
	slices.SortStableFunc(out, storerules.ByCreation)
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
// their pointers; the pointers are only cleanup, so failing to remove them
// is not an error (their TTL does it later).
func (s *Store) BumpGeneration(ctx context.Context, userID string) (uint64, error) {
	reply, err := s.revoke(ctx, bumpScript,
		[]string{s.generationKey(userID), s.sessionsKey(userID)},
		[]string{s.endsChannel(), userID, strconv.Itoa(keyTailLen)},
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
	s.dropPointers(ctx, userID, reply[1:])
	s.awaitRevocation(bumpMessage(userID, gen))
	return gen, nil
}

// dropPointers removes the pointers of a user's deleted sessions, given
// as script replies (whole keys).
func (s *Store) dropPointers(ctx context.Context, userID string, deleted []rueidis.RedisMessage) {
	drops := make([]rueidis.LuaExec, 0, len(deleted))
	for _, m := range deleted {
		if f, err := m.ToString(); err == nil && len(f) == len(cloakroom.Key{}) {
			drops = append(drops, rueidis.LuaExec{Keys: []string{s.pointerKey(cloakroom.Key([]byte(f)))}, Args: []string{userID}})
		}
	}
	if len(drops) > 0 {
		dropPointerScript.ExecMulti(ctx, s.client, drops...)
	}
}
