package sqlitestore

import (
	"context"
	"time"

	"github.com/cloakroom/cloakroom"
)

// foreignPollInterval is how often a watcher checks the file for other
// processes' commits when no request does: one read of the mapped
// wal-index header, so the bound on how late such an end is reported can
// be short.
const foreignPollInterval = 100 * time.Millisecond

// WatchEnds implements [cloakroom.EndNotifier]. Deletes, generation bumps
// and rotations made through this store are reported as they commit.
// Another process cannot say what it changed, so a commit of anyone else
// to the file (seen on the wal-index header, by the next Find, write or
// poll, within foreignPollInterval) is reported as End{All: true}, with the
// cache or without. A store made by New sees only its own ends.
func (s *Store) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	p := &fn
	s.watchMu.Lock()
	s.watchers[p] = struct{}{}
	s.watchMu.Unlock()
	defer func() {
		s.watchMu.Lock()
		delete(s.watchers, p)
		s.watchMu.Unlock()
	}()
	if s.cache == nil {
		<-ctx.Done()
		return nil
	}
	ticker := time.NewTicker(foreignPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			s.cache.poll()
		}
	}
}

// publish reports e to every watcher. Watchers must not block.
func (s *Store) publish(e cloakroom.End) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for fn := range s.watchers {
		(*fn)(e)
	}
}
