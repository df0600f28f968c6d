package pgstore

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom"
)

// Hooks for the external tests in pgstore_test.

// MigrationCount is the number of migrations this version applies.
var MigrationCount = len(migrations)

// MigrateFirst migrates schema as a version that knew only the first n
// migrations would have.
func MigrateFirst(ctx context.Context, pool *pgxpool.Pool, schema string, n int) error {
	return migrate(ctx, pool, schema, pgx.Identifier{schema}.Sanitize(), migrations[:n])
}

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
func ListenerPID(s *Store) uint32 { return s.hub.pid.Load() }

// Trusted reports whether s's cache serves: its lease is running.
func Trusted(s *Store) bool { return s.cache.trusted() }

// StallListener makes s's listener stop handling notifications and
// sending heartbeats, as a starved goroutine would, until release is
// called. The listener stops at its next heartbeat or notification:
// parked is closed once it has, and only from then on does s's cache stay
// as it is.
func StallListener(s *Store) (parked <-chan struct{}, release func()) {
	st := &stall{parked: make(chan struct{}), release: make(chan struct{})}
	s.hub.stall.Store(st)
	return st.parked, sync.OnceFunc(func() {
		s.hub.stall.Store(nil)
		close(st.release)
	})
}

// WaitedOut counts s's revocations that returned because a lease passed,
// not because every node acknowledged them.
func WaitedOut(s *Store) int64 { return s.hub.waitedOut.Load() }

// OnPurgeBatch makes Purge call f with the size of every batch it deletes.
func OnPurgeBatch(s *Store, f func(deleted int64)) { s.purgeHook.Store(&f) }

// Settled reports whether s's listener has been listening for a lease:
// from then on a revocation waits only for the nodes s has heard.
func Settled(s *Store) bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.live && monotonic() > s.hub.since+int64(s.hub.lease)+s.hub.margin()
}
