package redisstore

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
)

// readYourWritesWindow is how long Find bypasses the client-side cache for a
// session or user this Store itself just wrote. Redis pushes the
// invalidation for a write on whichever connection holds the cached entry,
// which need not be the one that carried the write, so the write's reply
// can overtake it by a few microseconds. Within one process that would let
// a Find right after a Commit return the previous version.
const readYourWritesWindow = time.Second

const recentShardCount = 16

// recentWrites remembers which sessions and users this Store changed within
// readYourWritesWindow. It is keyed by the session Key and the user ID.
type recentWrites struct {
	epoch time.Time // times are offsets from epoch, so they are monotonic
	seed  maphash.Seed
	last  atomic.Int64 // offset of the latest mark; lets Find skip the locks
	marks atomic.Uint32
	shard [recentShardCount]recentShard
}

type recentShard struct {
	mu       sync.RWMutex
	sessions map[cloakroom.Key]time.Duration
	users    map[string]time.Duration
}

func newRecentWrites() *recentWrites {
	r := &recentWrites{epoch: time.Now(), seed: maphash.MakeSeed()}
	for i := range r.shard {
		r.shard[i].sessions = make(map[cloakroom.Key]time.Duration)
		r.shard[i].users = make(map[string]time.Duration)
	}
	return r
}

func (r *recentWrites) userShard(userID string) *recentShard {
	return &r.shard[maphash.String(r.seed, userID)%recentShardCount]
}

// markSession records that the session under key was just written.
func (r *recentWrites) markSession(key cloakroom.Key) {
	now := time.Since(r.epoch)
	sh := &r.shard[key[0]%recentShardCount]
	sh.mu.Lock()
	sh.sessions[key] = now
	sh.mu.Unlock()
	r.marked(now)
}

// markUser records that the user's generation or sessions were just written.
func (r *recentWrites) markUser(userID string) {
	now := time.Since(r.epoch)
	sh := r.userShard(userID)
	sh.mu.Lock()
	sh.users[userID] = now
	sh.mu.Unlock()
	r.marked(now)
}

// marked publishes the latest mark and, every 64 marks, prunes one shard in
// turn so the maps stay as small as the write rate over the window.
func (r *recentWrites) marked(now time.Duration) {
	r.last.Store(int64(now))
	n := r.marks.Add(1)
	if n%64 != 0 {
		return
	}
	sh := &r.shard[(n/64)%recentShardCount]
	sh.mu.Lock()
	for k, t := range sh.sessions {
		if now-t > readYourWritesWindow {
			delete(sh.sessions, k)
		}
	}
	for k, t := range sh.users {
		if now-t > readYourWritesWindow {
			delete(sh.users, k)
		}
	}
	sh.mu.Unlock()
}

// quiet reports whether nothing at all was marked within the window.
func (r *recentWrites) quiet(now time.Duration) bool {
	return now-time.Duration(r.last.Load()) > readYourWritesWindow
}

// session reports whether the session under key was written within the window.
func (r *recentWrites) session(key cloakroom.Key) bool {
	now := time.Since(r.epoch)
	if r.quiet(now) {
		return false
	}
	sh := &r.shard[key[0]%recentShardCount]
	sh.mu.RLock()
	t, ok := sh.sessions[key]
	sh.mu.RUnlock()
	return ok && now-t <= readYourWritesWindow
}

// user reports whether the user was bumped within the window.
func (r *recentWrites) user(userID string) bool {
	now := time.Since(r.epoch)
	if r.quiet(now) {
		return false
	}
	sh := r.userShard(userID)
	sh.mu.RLock()
	t, ok := sh.users[userID]
	sh.mu.RUnlock()
	return ok && now-t <= readYourWritesWindow
}
