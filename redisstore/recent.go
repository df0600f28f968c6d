package redisstore

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
)

// readYourWritesWindow is how long Find double-checks cached answers about a
// session or user this Store itself just wrote. Redis pushes the
// invalidation for a write on whichever connection holds the cached entry,
// which need not be the one that carried the write, so the write's reply
// can overtake it by a few microseconds. Within one process that would let
// a Find right after a Commit return the previous version.
const readYourWritesWindow = time.Second

const recentShardCount = 16

// What a Store knows about its own recent write to a session.
const (
	// wroteUnknown: the write failed or its outcome is unknown, so a cached
	// answer cannot be checked; Find asks Redis.
	wroteUnknown = iota
	// wroteRecord: the session now holds exactly the mark's blob, so a
	// cached answer holding the same blob is current.
	wroteRecord
	// wroteDeletion: the session is gone, so a cached "not found" is current.
	wroteDeletion
)

// sessionMark is a recent write to one session.
type sessionMark struct {
	until time.Duration // offset from recentWrites.epoch after which it is forgotten
	kind  int
	blob  string // the record written, for wroteRecord
}

// userMark is a recent BumpGeneration of one user.
type userMark struct {
	until      time.Duration
	known      bool   // the bump succeeded and returned generation
	generation uint64 // the user's generation is at least this
}

// mark is a sessionMark or a userMark.
type mark interface {
	end() time.Duration // its until
}

func (m sessionMark) end() time.Duration { return m.until }
func (m userMark) end() time.Duration    { return m.until }

// recentWrites remembers what this Store wrote within readYourWritesWindow,
// keyed by the session Key and the user ID, so that Find can tell whether
// a cached answer already reflects those writes. Its answers are only ever
// used to reject a cached answer or to raise the generation a record must
// reach, never to accept one.
type recentWrites struct {
	epoch time.Time // times are offsets from epoch, so they are monotonic
	seed  maphash.Seed
	last  atomic.Int64 // the latest until of any mark; lets Find skip the locks
	marks atomic.Uint32
	shard [recentShardCount]recentShard
}

type recentShard struct {
	mu       sync.RWMutex
	sessions map[cloakroom.Key]sessionMark
	users    map[string]userMark
}

func newRecentWrites() *recentWrites {
	r := &recentWrites{epoch: time.Now(), seed: maphash.MakeSeed()}
	for i := range r.shard {
		r.shard[i].sessions = make(map[cloakroom.Key]sessionMark)
		r.shard[i].users = make(map[string]userMark)
	}
	return r
}

func (r *recentWrites) userShard(userID string) *recentShard {
	return &r.shard[maphash.String(r.seed, userID)%recentShardCount]
}

// markSession records a write by this Store to the session under key:
// kind is one of the wrote* constants, blob the record written for
// wroteRecord.
func (r *recentWrites) markSession(key cloakroom.Key, kind int, blob string) {
	r.markSessionFor(key, kind, blob, readYourWritesWindow)
}

// markSessionFor records a write to the session under key for d.
func (r *recentWrites) markSessionFor(key cloakroom.Key, kind int, blob string, d time.Duration) {
	now := time.Since(r.epoch)
	sh := &r.shard[key[0]%recentShardCount]
	sh.mu.Lock()
	if old, ok := sh.sessions[key]; ok && now <= old.until && old.kind == wroteDeletion && kind == wroteDeletion {
		d = max(d, old.until-now)
	}
	sh.sessions[key] = sessionMark{until: now + d, kind: kind, blob: blob}
	sh.mu.Unlock()
	r.marked(now, now+d)
}

// markUser records a BumpGeneration of the user by this Store: known tells
// whether it succeeded, returning generation.
func (r *recentWrites) markUser(userID string, known bool, generation uint64) {
	r.markUserFor(userID, known, generation, readYourWritesWindow)
}

// markUserFor records a generation bump of the user for d.
func (r *recentWrites) markUserFor(userID string, known bool, generation uint64, d time.Duration) {
	now := time.Since(r.epoch)
	sh := r.userShard(userID)
	sh.mu.Lock()
	if old, ok := sh.users[userID]; ok && now <= old.until && old.known && known {
		generation = max(generation, old.generation)
		d = max(d, old.until-now)
	}
	sh.users[userID] = userMark{until: now + d, known: known, generation: generation}
	sh.mu.Unlock()
	r.marked(now, now+d)
}

// marked publishes the latest until and, every 64 marks, prunes one shard
// in turn so the maps stay as small as the write rate over their windows.
func (r *recentWrites) marked(now, until time.Duration) {
	for {
		last := r.last.Load()
		if int64(until) <= last || r.last.CompareAndSwap(last, int64(until)) {
			break
		}
	}
	n := r.marks.Add(1)
	if n%64 != 0 {
		return
	}
	sh := &r.shard[(n/64)%recentShardCount]
	sh.mu.Lock()
	for k, m := range sh.sessions {
		if now > m.until {
			delete(sh.sessions, k)
		}
	}
	for k, m := range sh.users {
		if now > m.until {
			delete(sh.users, k)
		}
	}
	sh.mu.Unlock()
}

// quiet reports whether no mark is in force.
func (r *recentWrites) quiet(now time.Duration) bool {
	return now > time.Duration(r.last.Load())
}

// now is the time to pass to session and user. Find reads it once for
// both: clock reads are a noticeable part of a cached Find.
func (r *recentWrites) now() time.Duration { return time.Since(r.epoch) }

// session returns the write this Store made to the session under key
// within the window before now, if any.
func (r *recentWrites) session(key cloakroom.Key, now time.Duration) (sessionMark, bool) {
	if r.quiet(now) {
		return sessionMark{}, false
	}
	sh := &r.shard[key[0]%recentShardCount]
	return inForce(&sh.mu, sh.sessions, key, now)
}

// user returns the BumpGeneration this Store made for the user within the
// window before now, if any.
func (r *recentWrites) user(userID string, now time.Duration) (userMark, bool) {
	if r.quiet(now) {
		return userMark{}, false
	}
	sh := r.userShard(userID)
	return inForce(&sh.mu, sh.users, userID, now)
}

// inForce returns the mark under key in marks, which mu guards, if there
// is one and now is not past its until.
func inForce[K comparable, M mark](mu *sync.RWMutex, marks map[K]M, key K, now time.Duration) (M, bool) {
	mu.RLock()
	m, ok := marks[key]
	mu.RUnlock()
	if !ok || now > m.end() {
		var none M
		return none, false
	}
	return m, true
}

// accepts reports whether a cached answer about a session is consistent
// with this Store's recent write m: blob is the record the answer holds,
// "" if none.
func (m sessionMark) accepts(blob string) bool {
	switch m.kind {
	case wroteRecord:
		return blob == m.blob
	case wroteDeletion:
		return blob == ""
	default:
		return false
	}
}
