package sqlitestore

import (
	"context"
	"errors"
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
// cache or without. A store made by New sees only its own ends. Like
// every EndNotifier, it first reports End{All: true}, once subscribed.
func (s *Store) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	cancel, ok := s.ends.Subscribe(fn)
	if !ok {
		return errStoreClosed
	}
	defer cancel()
	var tick <-chan time.Time
	if s.cache != nil {
		ticker := time.NewTicker(foreignPollInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.ends.Closing():
			return errStoreClosed
		case <-tick:
			s.cache.poll()
		}
	}
}

var errStoreClosed = errors.New("sqlitestore: store closed")
