package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/storerules"
)

var _ cloakroom.AuxStore = (*Store)(nil)

// FindAux implements [cloakroom.AuxStore]. It always reads PostgreSQL: the
// cache holds sessions only, so a record that ends with the sessions is
// dead on every node as soon as BumpEpoch commits.
func (s *Store) FindAux(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	rec := cloakroom.AuxRecord{Key: key}
	var version, epoch int64
	err := s.pool.QueryRow(ctx, s.q.findAux, key[:], s.now()).Scan(&version, &rec.Expires, &rec.EndsWithSessions, &epoch, &rec.Data)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return cloakroom.AuxRecord{}, false, nil
	case err != nil:
		return cloakroom.AuxRecord{}, false, fmt.Errorf("pgstore: find record %s: %w", key.Short(), err)
	}
	rec.Version, rec.Epoch = uint64(version), uint64(epoch)
	return rec, true, nil
}

// CommitAux implements [cloakroom.AuxStore] with one compare-and-set
// statement; a failed one costs a second query, to tell ErrConflict from
// ErrNotFound.
func (s *Store) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	if err := storerules.CheckSQLAux(rec); err != nil {
		return fmt.Errorf("pgstore: commit record %s: %w", rec.Key.Short(), err)
	}
	now := s.now()
	// A record that would expire at once is refused, but only once it is
	// known that the write would otherwise have succeeded.
	expired := rec.Expired(now)
	if !expired {
		query := s.q.updateAux
		if rec.Version == 1 {
			query = s.q.createAux
		}
		data := rec.Data
		if data == nil {
			data = []byte{} // nil would be sent as NULL
		}
		tag, err := s.pool.Exec(ctx, query, rec.Key[:], int64(rec.Version), rec.Expires, rec.EndsWithSessions, int64(rec.Epoch), data, now)
		if err != nil {
			return fmt.Errorf("pgstore: commit record %s: %w", rec.Key.Short(), err)
		}
		if tag.RowsAffected() == 1 {
			return nil
		}
	}
	var epoch, stored int64
	if err := s.pool.QueryRow(ctx, s.q.auxState, rec.Key[:], now).Scan(&epoch, &stored); err != nil {
		return fmt.Errorf("pgstore: commit record %s: %w", rec.Key.Short(), err)
	}
	live := stored != 0
	var revoked string
	if rec.EndsWithSessions && rec.Epoch < uint64(epoch) {
		revoked = fmt.Sprintf("epoch %d ended by %d", rec.Epoch, epoch)
	}
	writable := revoked == "" && (rec.Version == 1 && !live || rec.Version > 1 && uint64(stored) == rec.Version-1)
	if expired && writable {
		return fmt.Errorf("pgstore: commit record %s: it expires at %v, not after now: %w", rec.Key.Short(), rec.Expires, cloakroom.ErrInvalidInput)
	}
	return writeFailure("record", rec.Key, rec.Version, revoked, live)
}

// DeleteAux implements [cloakroom.AuxStore].
func (s *Store) DeleteAux(ctx context.Context, key cloakroom.Key) error {
	if _, err := s.pool.Exec(ctx, s.q.deleteAux, key[:]); err != nil {
		return fmt.Errorf("pgstore: delete record %s: %w", key.Short(), err)
	}
	return nil
}
