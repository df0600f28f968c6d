package pgstore

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
)

// cache holds Find results of one Store. It fills only while enabled, which
// is while its listener's LISTEN is in effect, and it serves only while
// trusted: under a lease its listener renews each time it hears its own
// heartbeat (see hub).
type cache struct {
	mu      sync.RWMutex
	enabled bool
	entries map[cloakroom.Key]cloakroom.Record
	max     int

	// Invalidation counters. A Find reserves their values before querying
	// and may fill only if they are unchanged: the row it read might
	// predate an invalidation that arrived meanwhile. flushes covers
	// flushes and user-wide invalidations, stripes single keys, striped so
	// that writes to other sessions rarely spoil a fill.
	flushes uint64
	stripes [256]uint64

	// trustedUntil ends the lease (see monotonic); 0: not trusted.
	trustedUntil atomic.Int64
}

type fillToken struct {
	valid           bool
	flushes, stripe uint64
}

func newCache(max int) *cache {
	return &cache{entries: make(map[cloakroom.Key]cloakroom.Record), max: max}
}

// get returns the cached live record for key, if the cache is trusted.
// Entry and lease are read under one lock: an invalidation is applied
// under the write lock before the heartbeat that renews the lease after
// it is handled, so a lease seen here covers every invalidation it must.
func (c *cache) get(key cloakroom.Key, now time.Time) (cloakroom.Record, bool) {
	c.mu.RLock()
	rec, ok := c.entries[key]
	trusted := monotonic() < c.trustedUntil.Load()
	c.mu.RUnlock()
	if !ok || !trusted || rec.Expired(now) {
		return cloakroom.Record{}, false
	}
	return rec, true
}

// trusted reports whether the cache may serve now.
func (c *cache) trusted() bool { return monotonic() < c.trustedUntil.Load() }

// renew extends the lease to until (monotonic nanoseconds), never
// shortening it.
func (c *cache) renew(until int64) {
	for {
		cur := c.trustedUntil.Load()
		if until <= cur || c.trustedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

func (c *cache) reserve(key cloakroom.Key) fillToken {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return fillToken{valid: c.enabled, flushes: c.flushes, stripe: c.stripes[key[0]]}
}

// fill caches rec unless the cache was disabled or rec's key invalidated
// since tok was reserved.
func (c *cache) fill(tok fillToken, rec cloakroom.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !tok.valid || !c.enabled || c.flushes != tok.flushes || c.stripes[rec.Key[0]] != tok.stripe {
		return
	}
	if _, present := c.entries[rec.Key]; !present && len(c.entries) >= c.max {
		// Map iteration order is unspecified enough to serve as random
		// eviction, which needs no bookkeeping on the hit path.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[rec.Key] = rec
}

func (c *cache) invalidateKey(key cloakroom.Key) {
	c.mu.Lock()
	delete(c.entries, key)
	c.stripes[key[0]]++
	c.mu.Unlock()
}

// invalidateUser drops the user's sessions. Bumps are rare, so a scan is
// cheaper overall than a per-user index kept on every fill.
func (c *cache) invalidateUser(userID string) {
	c.mu.Lock()
	for k, rec := range c.entries {
		if rec.UserID == userID {
			delete(c.entries, k)
		}
	}
	c.flushes++
	c.mu.Unlock()
}

func (c *cache) flush() {
	c.mu.Lock()
	clear(c.entries)
	c.flushes++
	c.mu.Unlock()
}

// setEnabled flushes the cache and turns filling on or off; turning it off
// also ends the lease. Either way the flush is needed: when turning off,
// entries can no longer be trusted; when turning on, invalidations sent
// while off were never seen.
func (c *cache) setEnabled(on bool) {
	c.mu.Lock()
	c.enabled = on
	if !on {
		c.trustedUntil.Store(0)
	}
	clear(c.entries)
	c.flushes++
	c.mu.Unlock()
}

func (c *cache) isEnabled() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.enabled
}
