package upstreamjwt

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrTokenReplayed is returned by [ReplayCache.Check] for a "jti" already
// seen: the gateway mints a fresh token for every request, so a second use
// is someone replaying a copy (from a log, a proxy, a compromised peer).
var ErrTokenReplayed = errors.New("upstreamjwt: token replayed")

// ErrReplayCacheFull is returned by [ReplayCache.Check] when the cache holds
// its maximum of unexpired jti: it cannot remember one more, so it refuses
// the token rather than risk accepting a replay of it.
var ErrReplayCacheFull = errors.New("upstreamjwt: replay cache full")

// DefaultReplayCacheSize bounds a [ReplayCache] unless told otherwise.
const DefaultReplayCacheSize = 100_000

// ReplayCacheSubjectShare: no one subject (user) may hold more than
// 1/ReplayCacheSubjectShare of a [ReplayCache]'s entries. A user sending
// requests as fast as they can then has their own tokens refused past
// their share, instead of filling the cache and so having every user's
// refused.
const ReplayCacheSubjectShare = 10

// ReplayCache remembers the "jti" of verified tokens until they expire, so
// an upstream can accept each token once. It is safe for concurrent use.
// Use it after [Verify]:
//
//	claims, err := upstreamjwt.Verify(token, jwks, audience, now)
//	if err == nil {
//		err = cache.Check(claims, now)
//	}
//
// A jti is remembered until its token's exp plus [VerifyLeeway], when
// Verify refuses the token anyway, and never forgotten earlier: when the
// cache is full of unexpired jti, new tokens are refused (fail closed) until
// some expire. Expired entries are found in expiry order, so each Check
// costs O(log n) amortised, also when the cache is full.
type ReplayCache struct {
	mu         sync.Mutex
	max        int
	perSubject int // most entries one subject may hold
	seen       map[string]struct{}
	held       map[string]int // entries per subject
	expiry     expiryHeap     // the jti in seen, soonest forgettable first
	examined   int            // heap entries looked at while expiring; for tests
}

// NewReplayCache returns a cache of at most size entries
// (DefaultReplayCacheSize when <= 0).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	return &ReplayCache{
		max: size, perSubject: max(1, size/ReplayCacheSubjectShare),
		seen: make(map[string]struct{}), held: make(map[string]int),
	}
}

// Check records the token's jti and fails with an error wrapping
// ErrInvalidToken and ErrTokenReplayed if it was seen before. A token
// without jti or exp is refused. When the cache is full of unexpired
// entries, or its subject holds its share of them
// ([ReplayCacheSubjectShare]), it refuses the token too, with
// ErrReplayCacheFull (fail closed): size it for the request rate times the
// token lifetime plus VerifyLeeway. (Many subjects flooding together can
// still fill it: rate-limit users at the gateway.)
func (c *ReplayCache) Check(claims Claims, now time.Time) error {
	if claims.ID == "" {
		return fmt.Errorf("%w: no jti", ErrInvalidToken)
	}
	if claims.ExpiresAt.IsZero() {
		// It would be forgotten at once.
		return fmt.Errorf("%w: no exp", ErrInvalidToken)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[claims.ID]; ok {
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenReplayed)
	}
	c.forgetExpired(now)
	if len(c.seen) >= c.max {
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrReplayCacheFull)
	}
	if c.held[claims.Subject] >= c.perSubject {
		return fmt.Errorf("%w: %w: the subject holds its share", ErrInvalidToken, ErrReplayCacheFull)
	}
	c.seen[claims.ID] = struct{}{}
	c.held[claims.Subject]++
	heap.Push(&c.expiry, expiryEntry{until: claims.ExpiresAt.Add(VerifyLeeway), jti: claims.ID, subject: claims.Subject})
	return nil
}

// forgetExpired drops the entries whose tokens no longer verify at now.
// Each entry is popped once in its life, and the loop stops at the first
// live one.
func (c *ReplayCache) forgetExpired(now time.Time) {
	for len(c.expiry) > 0 {
		c.examined++
		if !now.After(c.expiry[0].until) {
			return
		}
		e := heap.Pop(&c.expiry).(expiryEntry)
		delete(c.seen, e.jti)
		if c.held[e.subject]--; c.held[e.subject] <= 0 {
			delete(c.held, e.subject)
		}
	}
}

type expiryEntry struct {
	until   time.Time
	jti     string
	subject string
}

// expiryHeap is a min-heap on until, for container/heap.
type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = expiryEntry{} // let the jti be collected
	*h = old[:len(old)-1]
	return e
}
