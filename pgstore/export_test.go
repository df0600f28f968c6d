package pgstore

import "github.com/cloakroom/cloakroom"

// Hooks for the external tests in pgstore_test.

// MigrationCount is the number of migrations this version applies.
var MigrationCount = len(migrations)

// Cached reports whether s's cache holds key.
func Cached(s *Store, key cloakroom.Key) bool {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	_, ok := s.cache.entries[key]
	return ok
}

// CacheEnabled reports whether s's cache serves, that is whether its
// listener is connected.
func CacheEnabled(s *Store) bool { return s.cache.isEnabled() }

// ListenerPID is the backend process ID of s's listening connection, 0
// while it is disconnected.
func ListenerPID(s *Store) uint32 { return s.listenerPID.Load() }

// OnPurgeBatch makes Purge call f with the size of every batch it deletes.
func OnPurgeBatch(s *Store, f func(deleted int64)) { s.purgeHook.Store(&f) }
