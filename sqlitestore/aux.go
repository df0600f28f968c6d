package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/storerules"
)

// Auxiliary records live in their own table, aux_records, so they never
// meet a session: not by key, not in List, not in a user's or a key's
// revocation. They are never cached; FindAux reads the database, and so
// sees the epoch as every store on the file does at that instant.

// liveAux is the SQL condition for an aux_records row a that FindAux may
// return at :now: unexpired and, if it ends with the sessions, of an epoch
// not below the current one.
const liveAux = `a.expiry_unix_ms > :now AND (a.ends_with_sessions = 0 OR a.epoch >= ` + currentEpoch + `)`

// auxEpochCurrent is the SQL condition that the record being written is
// not of a past epoch.
const auxEpochCurrent = `(:ends = 0 OR :epoch >= ` + currentEpoch + `)`

// auxStatements are the statements of the auxiliary records. Each write
// starts with a statement that writes, as prepare explains.
func (s *Store) auxStatements() []statement {
	return []statement{
		{s.read, &s.findAuxStmt, `
SELECT a.version, a.expiry_unix_ms, a.ends_with_sessions, a.epoch, a.data
FROM {p}aux_records AS a WHERE a.key = :key AND ` + liveAux},
		// Creates the record, or replaces a dead one under the same key;
		// changes nothing if the key holds a live record, the record is of
		// a past epoch or it expires by now.
		{s.write, &s.createAuxStmt, `
INSERT INTO {p}aux_records AS a (key, version, expiry_unix_ms, ends_with_sessions, epoch, data)
SELECT :key, 1, :expiry, :ends, :epoch, :data
WHERE :expiry > :now AND ` + auxEpochCurrent + `
ON CONFLICT (key) DO UPDATE SET
	version = excluded.version, expiry_unix_ms = excluded.expiry_unix_ms,
	ends_with_sessions = excluded.ends_with_sessions, epoch = excluded.epoch, data = excluded.data
WHERE NOT (` + liveAux + `)`},
		// Compare-and-set on version, like the sessions' update.
		{s.write, &s.updateAuxStmt, `
UPDATE {p}aux_records AS a SET
	version = :version, expiry_unix_ms = :expiry, ends_with_sessions = :ends, epoch = :epoch, data = :data
WHERE a.key = :key AND a.version = :previous AND ` + liveAux + `
	AND :expiry > :now AND ` + auxEpochCurrent},
		// Why a CommitAux changed nothing: the current epoch and the
		// version of the live record under the key (NULL if none).
		{s.write, &s.auxStateStmt, `
SELECT ` + currentEpoch + `,
	(SELECT a.version FROM {p}aux_records AS a WHERE a.key = :key AND ` + liveAux + `)`},
		{s.write, &s.deleteAuxStmt, `DELETE FROM {p}aux_records WHERE key = :key`},
		{s.write, &s.purgeAuxStmt, `
DELETE FROM {p}aux_records WHERE rowid IN (
	SELECT rowid FROM {p}aux_records
	WHERE expiry_unix_ms <= :now OR (ends_with_sessions = 1 AND epoch < ` + currentEpoch + `)
	LIMIT :limit)`},
	}
}

// FindAux implements [cloakroom.AuxStore].
func (s *Store) FindAux(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	var version, expiryMs, epoch int64
	var ends bool
	var data []byte
	err := s.findAuxStmt.QueryRowContext(ctx, sql.Named("key", key[:]), sql.Named("now", s.now().UnixMilli())).
		Scan(&version, &expiryMs, &ends, &epoch, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return cloakroom.AuxRecord{}, false, nil
	}
	if err != nil {
		return cloakroom.AuxRecord{}, false, fmt.Errorf("sqlitestore: find record %s: %w", key.Short(), err)
	}
	return cloakroom.AuxRecord{
		Key: key, Version: uint64(version), Expires: time.UnixMilli(expiryMs),
		EndsWithSessions: ends, Epoch: uint64(epoch), Data: data,
	}, true, nil
}

// CommitAux implements [cloakroom.AuxStore]. Expires is kept in whole
// milliseconds, rounded down, like a session's expiry.
func (s *Store) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	if !rec.EndsWithSessions {
		rec.Epoch = 0 // ignored, and then never compared
	}
	if err := storerules.CheckSQLAux(rec); err != nil {
		return fmt.Errorf("sqlitestore: commit record %s: %w", rec.Key.Short(), err)
	}
	data := rec.Data
	if data == nil {
		data = []byte{} // the column is NOT NULL
	}
	args := []any{
		sql.Named("key", rec.Key[:]),
		sql.Named("expiry", rec.Expires.UnixMilli()),
		sql.Named("ends", rec.EndsWithSessions),
		sql.Named("epoch", int64(rec.Epoch)),
		sql.Named("data", data),
		sql.Named("now", s.now().UnixMilli()),
	}
	// Auxiliary records are not cached: the write changes no session.
	err := s.commitVersioned(ctx, change{}, rec.Version, s.createAuxStmt, s.updateAuxStmt, args, func(tx *sql.Tx, args []any) error {
		return s.auxRefusal(ctx, tx, rec, args)
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: commit record %s: %w", rec.Key.Short(), err)
	}
	return nil
}

// auxRefusal explains a CommitAux that changed nothing, reading in the
// same transaction, in the order memstore checks.
func (s *Store) auxRefusal(ctx context.Context, tx *sql.Tx, rec cloakroom.AuxRecord, args []any) error {
	var epoch int64
	var storedVersion sql.NullInt64
	if err := tx.StmtContext(ctx, s.auxStateStmt).QueryRowContext(ctx, args...).Scan(&epoch, &storedVersion); err != nil {
		return err
	}
	switch {
	case rec.EndsWithSessions && int64(rec.Epoch) < epoch:
		return fmt.Errorf("epoch %d revoked, the current one is %d: %w", rec.Epoch, epoch, cloakroom.ErrNotFound)
	case rec.Version == 1 && storedVersion.Valid:
		return fmt.Errorf("create: key exists: %w", cloakroom.ErrConflict)
	case rec.Version > 1 && !storedVersion.Valid:
		return fmt.Errorf("update to version %d: %w", rec.Version, cloakroom.ErrNotFound)
	case rec.Version > 1 && uint64(storedVersion.Int64) != rec.Version-1:
		return fmt.Errorf("update to version %d, stored version is %d: %w", rec.Version, storedVersion.Int64, cloakroom.ErrConflict)
	default:
		return fmt.Errorf("it expires at %v, not after now: %w", rec.Expires, cloakroom.ErrInvalidInput)
	}
}

// DeleteAux implements [cloakroom.AuxStore].
func (s *Store) DeleteAux(ctx context.Context, key cloakroom.Key) error {
	err := s.inWriteTx(ctx, change{}, func(tx *sql.Tx) (bool, error) {
		res, err := tx.StmtContext(ctx, s.deleteAuxStmt).ExecContext(ctx, sql.Named("key", key[:]))
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n > 0, err
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: delete record %s: %w", key.Short(), err)
	}
	return nil
}
