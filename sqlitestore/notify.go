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

// WatchEnds implements [cloakroom.EndNotifier]. Deletes, generation and
// epoch bumps and rotations made through this store are reported as they
// commit. Another process cannot say what it changed, so a commit of
// anyone else to the file (seen on the wal-index header, by the next Find,
// write or poll, within foreignPollInterval) is reported as End{All:
// true}, with the cache or without; if it bumped the epoch, the next poll
// reads the epoch and reports End{Epoch} too. A store made by New sees
// only its own ends. Like every EndNotifier, it first reports End{All:
// true}, once subscribed.
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
			s.publishForeignEpoch(ctx)
		}
	}
}

// publishForeignEpoch reports End{Epoch} for an epoch another connection
// bumped. It reads the epoch only when another connection committed since
// it last did, at most once a poll, so a busy file costs one query a tick:
// End{All: true} went out at once already, and has every watched session
// re-checked; this only names the cause.
func (s *Store) publishForeignEpoch(ctx context.Context) {
	if !s.epochUnchecked.Swap(false) {
		return
	}
	epoch, err := s.Epoch(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.WarnContext(ctx, "sqlitestore: cannot read the epoch after another process's commit", "err", err)
		}
		s.epochUnchecked.Store(true) // try again at the next tick
		return
	}
	s.publishEpoch(epoch)
}

var errStoreClosed = errors.New("sqlitestore: store closed")
