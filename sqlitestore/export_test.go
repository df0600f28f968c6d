package sqlitestore

import "github.com/cloakroom/cloakroom"

// Cached reports whether s's cache holds key.
func Cached(s *Store, key cloakroom.Key) bool {
	if !s.cacheServes {
		return false
	}
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	_, ok := s.cache.entries[key]
	return ok
}

// SetAfterCommitHook makes fn run between each cached write's COMMIT and
// the cache's accounting for it.
func SetAfterCommitHook(s *Store, fn func()) { s.testHookAfterCommit = fn }
