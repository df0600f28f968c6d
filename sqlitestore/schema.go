package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrSchemaTooNew is returned by [Open] and [New] for a database whose
// schema was written by a newer version of this package. Opening it anyway
// could misread or corrupt sessions, so the store refuses.
var ErrSchemaTooNew = errors.New("sqlitestore: database schema is newer than this version supports")

// schemaComponent names this package's row in the schema_version table. The
// table has one row per component so that the application sharing the file
// (the gateway's users, for instance) can version its own tables there too.
const schemaComponent = "cloakroom/sqlitestore"

// migrations moves the schema forward one version each: migrations[i] takes
// version i to i+1. Append only; never edit an entry that has shipped.
// "{p}" stands for Config.TablePrefix.
var migrations = []string{
	// 1: sessions and user generations.
	//
	// The record column holds cloakroom.Record.MarshalBinary, which is what
	// Find and List return; the other columns copy the fields that queries
	// filter on. expiry_unix_ms is Record.Expiry in Unix milliseconds.
	// user_id is NULL for an anonymous session so the user index skips them.
	`
CREATE TABLE {p}sessions (
	key            BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
	user_id        TEXT    CHECK (user_id <> ''),
	handle         TEXT    NOT NULL,
	generation     INTEGER NOT NULL CHECK (generation >= 0),
	version        INTEGER NOT NULL CHECK (version >= 1),
	expiry_unix_ms INTEGER NOT NULL,
	record         BLOB    NOT NULL
) STRICT;
CREATE INDEX {p}sessions_by_user ON {p}sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX {p}sessions_by_expiry ON {p}sessions (expiry_unix_ms);
CREATE TABLE {p}user_generations (
	user_id    TEXT    NOT NULL PRIMARY KEY,
	generation INTEGER NOT NULL CHECK (generation >= 0)
) STRICT, WITHOUT ROWID;
`,
	// 2: the global epoch and the auxiliary records.
	//
	// sessions.epoch copies Record.Epoch; sessions stored before it
	// existed hold format-1 records, which decode as epoch 0, as the
	// column's default says. global_epoch has at most one row; no row
	// means epoch 0. aux_records keeps cloakroom.AuxRecord, with
	// expiry_unix_ms its Expires in Unix milliseconds and epoch 0 for a
	// record that does not end with the sessions.
	`
ALTER TABLE {p}sessions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0);
CREATE INDEX {p}sessions_by_epoch ON {p}sessions (epoch);
CREATE TABLE {p}global_epoch (
	id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 0),
	epoch INTEGER NOT NULL CHECK (epoch >= 1)
) STRICT;
CREATE TABLE {p}aux_records (
	key                BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
	version            INTEGER NOT NULL CHECK (version >= 1),
	expiry_unix_ms     INTEGER NOT NULL,
	ends_with_sessions INTEGER NOT NULL CHECK (ends_with_sessions IN (0, 1)),
	epoch              INTEGER NOT NULL CHECK (epoch >= 0),
	data               BLOB    NOT NULL
) STRICT;
CREATE INDEX {p}aux_records_by_expiry ON {p}aux_records (expiry_unix_ms);
CREATE INDEX {p}aux_records_by_epoch ON {p}aux_records (epoch) WHERE ends_with_sessions = 1;
`,
}

var tablePrefixPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withPrefix returns query with "{p}" replaced by prefix. The prefix was
// checked against tablePrefixPattern, so it cannot inject SQL.
func withPrefix(prefix, query string) string {
	return strings.ReplaceAll(query, "{p}", prefix)
}

// migrate brings the schema in db up to date inside one transaction, so a
// failed migration leaves the previous schema intact.
func migrate(ctx context.Context, db *sql.DB, prefix string) error {
	createVersionTable := withPrefix(prefix, `
CREATE TABLE IF NOT EXISTS {p}schema_version (
	component TEXT    NOT NULL PRIMARY KEY,
	version   INTEGER NOT NULL
) STRICT, WITHOUT ROWID`)
	if _, err := db.ExecContext(ctx, createVersionTable); err != nil {
		return fmt.Errorf("sqlitestore: create schema_version table: %w", err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitestore: migrate: %w", err)
	}
	defer tx.Rollback() // no-op after Commit

	// The first statement writes, so the transaction takes SQLite's write
	// lock (waiting out busy_timeout) before it reads the version: two
	// processes opening a new file at once migrate one after the other.
	claim := withPrefix(prefix, `INSERT INTO {p}schema_version (component, version) VALUES (?1, 0) ON CONFLICT (component) DO NOTHING`)
	if _, err := tx.ExecContext(ctx, claim, schemaComponent); err != nil {
		return fmt.Errorf("sqlitestore: migrate: %w", err)
	}
	var version int
	readVersion := withPrefix(prefix, `SELECT version FROM {p}schema_version WHERE component = ?1`)
	if err := tx.QueryRowContext(ctx, readVersion, schemaComponent).Scan(&version); err != nil {
		return fmt.Errorf("sqlitestore: migrate: read schema version: %w", err)
	}
	switch {
	case version > len(migrations):
		return fmt.Errorf("%w: the file is at schema version %d, this build knows versions up to %d; upgrade cloakroom", ErrSchemaTooNew, version, len(migrations))
	case version < 0:
		return fmt.Errorf("sqlitestore: migrate: invalid schema version %d", version)
	case version == len(migrations):
		return nil
	}
	for v := version; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, withPrefix(prefix, migrations[v])); err != nil {
			return fmt.Errorf("sqlitestore: migrate to schema version %d: %w", v+1, err)
		}
	}
	setVersion := withPrefix(prefix, `UPDATE {p}schema_version SET version = ?2 WHERE component = ?1`)
	if _, err := tx.ExecContext(ctx, setVersion, schemaComponent, len(migrations)); err != nil {
		return fmt.Errorf("sqlitestore: migrate: record schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitestore: migrate: commit: %w", err)
	}
	return nil
}
