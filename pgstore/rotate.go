package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cloakroom/cloakroom"
)

var (
	_ cloakroom.Rotator     = (*Store)(nil)
	_ cloakroom.EndNotifier = (*Store)(nil)
)

// errRotateRefused rolls a rotation back; Rotate reports the wrapped
// reason.
var errRotateRefused = errors.New("refused")

// Rotate implements [cloakroom.Rotator] in one transaction. It first locks
// the new session's user's generation row FOR UPDATE, so from its check
// until the commit no bump, no login pinned to that generation and no
// commit of the user's sessions can interleave; bumps and commits take the
// same row lock first, so the order of locks is the same everywhere. The
// old session is checked and deleted by one DELETE, which waits for (and
// then re-checks against) a concurrent update of it, and deletes nothing
// if a concurrent Delete or bump removed it first. The global epoch is not
// locked: a rotation that read it before a BumpEpoch committed leaves a new
// session that every read finds dead.
//
// When the rotation ends a session (Old deleted, or Bump), it returns only
// once no caching node can serve what it ended (see the package
// documentation).
func (s *Store) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	rec := r.New
	fail := func(err error) (cloakroom.Record, error) {
		return cloakroom.Record{}, fmt.Errorf("pgstore: rotate %s to %s: %w", r.Old.Short(), rec.Key.Short(), err)
	}
	if err := r.Check(); err != nil {
		return fail(err)
	}
	deleteOld := r.Old != cloakroom.Key{}
	if s.cache != nil {
		s.cache.invalidateKey(rec.Key)
		defer s.cache.invalidateKey(rec.Key)
		if deleteOld {
			s.cache.invalidateKey(r.Old)
			defer s.cache.invalidateKey(r.Old)
		}
		if r.Bump {
			s.cache.invalidateUser(rec.UserID)
			defer s.cache.invalidateUser(rec.UserID)
		}
	}
	now := s.now()
	var ends []endEvent
	rev := s.revocation()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ends = ends[:0]
		if rec.UserID != "" {
			batch := &pgx.Batch{}
			batch.Queue(s.q.ensureGeneration, rec.UserID)
			var current int64
			batch.Queue(s.q.lockGeneration, rec.UserID).QueryRow(func(row pgx.Row) error { return row.Scan(&current) })
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return err
			}
			if uint64(current) != rec.Generation {
				return fmt.Errorf("%w: generation %d is not the user's current %d: %w", errRotateRefused, rec.Generation, current, cloakroom.ErrNotFound)
			}
		}
		switch {
		case r.OldMustLive:
			// The DELETE answers the version it deleted, or nothing; a
			// refusal below rolls it back.
			var version int64
			err := tx.QueryRow(ctx, s.q.deleteLive, r.Old[:], now).Scan(&version)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return fmt.Errorf("%w: old session gone, expired or revoked: %w", errRotateRefused, cloakroom.ErrNotFound)
			case err != nil:
				return err
			case r.OldVersion != 0 && uint64(version) != r.OldVersion:
				return fmt.Errorf("%w: old session is at version %d, not %d: %w", errRotateRefused, version, r.OldVersion, cloakroom.ErrConflict)
			}
			ends = append(ends, endEvent{key: r.Old, hasKey: true})
		case deleteOld:
			tag, err := tx.Exec(ctx, s.q.deleteAny, r.Old[:])
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				ends = append(ends, endEvent{key: r.Old, hasKey: true})
			}
		}
		if r.Bump {
			var gen int64
			if err := tx.QueryRow(ctx, s.q.bump, rec.UserID).Scan(&gen); err != nil {
				return err
			}
			// Deletes the user's other sessions; its NOTIFY goes after
			// the old session's below, which is fine: both precede
			// the marker.
			if _, err := tx.Exec(ctx, s.q.revoke, rec.UserID, gen, s.channel, bumpPayload(rec.UserID, gen), ""); err != nil {
				return err
			}
			rec.Generation = uint64(gen)
			ends = append(ends, endEvent{user: rec.UserID, generation: uint64(gen)})
		}
		blob, err := rec.MarshalBinary()
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		// The epoch is read with the writes, sparing a round trip, and
		// checked after them: a refusal rolls them back. A bump
		// committed after the read makes the new session dead anyway.
		var epoch int64
		batch.Queue(s.q.epoch).QueryRow(func(row pgx.Row) error { return row.Scan(&epoch) })
		created := false
		batch.Queue(s.q.insert, rec.Key[:], rec.UserID, rec.Handle, int64(rec.Generation), int64(rec.Version),
			rec.CreatedAt, rec.Expiry(), blob, int64(rec.Epoch), now).Exec(func(tag pgconn.CommandTag) error {
			created = tag.RowsAffected() == 1
			return nil
		})
		for _, ev := range ends {
			if ev.hasKey {
				batch.Queue(s.q.notify, s.channel, prefixDeleted+ev.key.String())
			}
		}
		if len(ends) > 0 && rev != nil {
			batch.Queue(s.q.notify, s.channel, rev.marker)
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		if rec.Epoch < uint64(epoch) {
			return fmt.Errorf("%w: epoch %d ended by %d: %w", errRotateRefused, rec.Epoch, epoch, cloakroom.ErrNotFound)
		}
		if !created {
			return fmt.Errorf("%w: %w", errRotateRefused, cloakroom.ErrConflict)
		}
		return nil
	})
	committed := err == nil && len(ends) > 0
	s.hub.finish(rev, committed)
	if err != nil {
		return fail(err)
	}
	for _, ev := range ends {
		s.hub.publish(ev)
	}
	return rec, nil
}

// WatchEnds implements [cloakroom.EndNotifier] through the store's
// notifications: it reports ends made by any Store on the same schema, on
// any node, and End{All: true} whenever its listening connection has
// (re)connected, since ends may have been missed while it was down. It
// starts the listener if the cache has not, and returns when ctx is done or
// the Store is closed.
func (s *Store) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	if err := s.startListener(ctx, false); err != nil {
		return err
	}
	sub := &subscriber{fn: func(ev endEvent) {
		switch {
		case ev.all:
			fn(cloakroom.End{All: true})
		case ev.hasKey:
			fn(cloakroom.End{Key: ev.key})
		case ev.epoch != 0:
			fn(cloakroom.End{Epoch: ev.epoch})
		default:
			fn(cloakroom.End{UserID: ev.user, Generation: ev.generation})
		}
	}}
	h := s.hub
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	live := h.live
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, sub)
		h.mu.Unlock()
	}()
	if live {
		// Ends before the subscription were not reported to fn.
		fn(cloakroom.End{All: true})
	}
	select {
	case <-ctx.Done():
	case <-s.background.Done():
	}
	return nil
}
