package upstreamjwt

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrTokenReplayed is returned by [ReplayCache.Check] for a "jti" already
// seen: the gateway mints a fresh token for every request, so a second use
// is someone replaying a copy (from a log, a proxy, a compromised peer).
var ErrTokenReplayed = errors.New("upstreamjwt: token replayed")

// DefaultReplayCacheSize bounds a [ReplayCache] unless told otherwise.
const DefaultReplayCacheSize = 100_000

// ReplayCache remembers the "jti" of verified tokens until they expire, so
// an upstream can accept each token once. It is safe for concurrent use.
// Use it after [Verify]:
//
//	claims, err := upstreamjwt.Verify(token, jwks, audience, now)
//	if err == nil {
//		err = cache.Check(claims, now)
//	}
type ReplayCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]time.Time // jti -> when it can be forgotten
}

// NewReplayCache returns a cache of at most size entries
// (DefaultReplayCacheSize when <= 0).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		size = DefaultReplayCacheSize
	}
	return &ReplayCache{max: size, seen: make(map[string]time.Time)}
}

// Check records the token's jti and fails with an error wrapping
// ErrInvalidToken and ErrTokenReplayed if it was seen before. When the
// cache is full of unexpired entries it refuses the token too (fail
// closed): size it for the request rate times the token lifetime.
func (c *ReplayCache) Check(claims Claims, now time.Time) error {
	if claims.ID == "" {
		return fmt.Errorf("%w: no jti", ErrInvalidToken)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[claims.ID]; ok {
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenReplayed)
	}
	if len(c.seen) >= c.max {
		for jti, until := range c.seen {
			if now.After(until) {
				delete(c.seen, jti)
			}
		}
		if len(c.seen) >= c.max {
			return fmt.Errorf("%w: replay cache full", ErrInvalidToken)
		}
	}
	c.seen[claims.ID] = claims.ExpiresAt.Add(VerifyLeeway)
	return nil
}
