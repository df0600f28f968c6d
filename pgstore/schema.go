package pgstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migration is one step of the schema's history. Steps are applied in
// order, each once; "{s}" stands for the quoted schema name. Never edit a
// released step: append a new one.
type migration struct {
	name string
	sql  string
}

var migrations = []migration{
	{
		name: "sessions and user generations",
		sql: `
CREATE TABLE {s}.sessions (
	key        bytea PRIMARY KEY,
	user_id    text,
	handle     text NOT NULL,
	generation bigint NOT NULL,
	version    bigint NOT NULL,
	created_at timestamptz NOT NULL,
	expiry     timestamptz NOT NULL,
	record     bytea NOT NULL
);
CREATE INDEX sessions_user_id ON {s}.sessions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_expiry ON {s}.sessions (expiry);
CREATE TABLE {s}.user_generations (
	user_id    text PRIMARY KEY,
	generation bigint NOT NULL
);`,
	},
}

// migrate brings schema up to date. The advisory lock serializes gateways
// starting at once, including their CREATE SCHEMA, which is not safe to
// race even with IF NOT EXISTS.
func migrate(ctx context.Context, pool *pgxpool.Pool, name, schema string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey(name)); err != nil {
			return err
		}
		// Checked before creating so a role without CREATE rights can
		// run against a schema an administrator migrated.
		var schemaExists, tableExists bool
		err := tx.QueryRow(ctx,
			"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), to_regclass($2) IS NOT NULL",
			name, schema+".schema_migrations").Scan(&schemaExists, &tableExists)
		if err != nil {
			return err
		}
		if !schemaExists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
				return err
			}
		}
		if !tableExists {
			_, err := tx.Exec(ctx, "CREATE TABLE "+schema+`.schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`)
			if err != nil {
				return err
			}
		}
		var applied int
		if err := tx.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM "+schema+".schema_migrations").Scan(&applied); err != nil {
			return err
		}
		// A schema newer than this code is left alone: migrations only
		// add, so older gateways keep working during a rolling deploy.
		for version := applied + 1; version <= len(migrations); version++ {
			m := migrations[version-1]
			if _, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, "{s}", schema)); err != nil {
				return fmt.Errorf("migration %d (%s): %w", version, m.name, err)
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+schema+".schema_migrations (version, name) VALUES ($1, $2)", version, m.name)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate schema %s: %w", schema, err)
	}
	return nil
}

// migrationLockKey is the advisory lock taken while migrating schema, the
// same on every gateway.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("cloakroom/pgstore migrate "))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

// notifyChannel is the LISTEN/NOTIFY channel of the stores on schema. It is
// hashed because a channel name, like any identifier, stops at 63 bytes.
func notifyChannel(schema string) string {
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("cloakroom_%016x", h.Sum64())
}

// maxNotifyPayload is PostgreSQL's NOTIFY payload limit (8000 bytes) less
// one for safety.
const maxNotifyPayload = 7999

// bumpPayload announces userID's new generation, or is a full flush for a
// user ID too long for a NOTIFY payload.
func bumpPayload(userID string, generation int64) string {
	p := fmt.Sprintf("%s%d:%s", prefixBumped, generation, userID)
	if len(p) > maxNotifyPayload {
		return flushPayload
	}
	return p
}

// queries are the statements a Store runs, with its schema filled in.
//
// Parameters common to create and update: $1 key, $2 user ID ("" for
// anonymous, stored as NULL), $3 handle, $4 generation, $5 version,
// $6 created_at, $7 expiry, $8 record, $9 now, $10 channel, $11 payload.
// The casts are needed where an INSERT ... SELECT cannot infer types.
type queries struct {
	find, list, create, update, commitState, delete   string
	ensureGeneration, generation, bump, revoke, purge string

	// Rotate's: $1 key and $2 now unless noted.
	lockGeneration        string // $1 user ID
	deleteLive, deleteAny string // deleteAny: $1 only
	liveVersion           string
	insert                string // parameters $1 to $9 as for create
	notify                string // $1 channel, $2 payload
}

// A session is live when it has not expired at the Go-side now and its
// generation is not below its user's; anonymous sessions (user_id NULL)
// join no generation row.
const liveSessions = `{s}.sessions s
	LEFT JOIN {s}.user_generations g ON g.user_id = s.user_id
	WHERE s.expiry > $%d AND s.generation >= COALESCE(g.generation, 0)`

// currentGeneration locks the committing user's generation row, if any,
// until the statement's transaction ends.
const currentGeneration = `COALESCE((SELECT generation FROM {s}.user_generations WHERE user_id = NULLIF($2::text, '') FOR SHARE), 0)`

func newQueries(schema string) queries {
	q := queries{
		find: `SELECT s.record FROM ` + fmt.Sprintf(liveSessions, 2) + ` AND s.key = $1`,

		list: `SELECT s.record FROM ` + fmt.Sprintf(liveSessions, 2) + ` AND s.user_id = $1
	ORDER BY s.created_at, s.handle`,

		// A stored session that is expired or revoked counts as absent
		// and is replaced.
		create: `WITH written AS (
	INSERT INTO {s}.sessions AS old (key, user_id, handle, generation, version, created_at, expiry, record)
	SELECT $1::bytea, NULLIF($2::text, ''), $3::text, $4::bigint, $5::bigint, $6::timestamptz, $7::timestamptz, $8::bytea
	WHERE $4::bigint >= ` + currentGeneration + `
	ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, handle = EXCLUDED.handle,
		generation = EXCLUDED.generation, version = EXCLUDED.version, created_at = EXCLUDED.created_at,
		expiry = EXCLUDED.expiry, record = EXCLUDED.record
	WHERE old.expiry <= $9::timestamptz
		OR old.generation < COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = old.user_id), 0)
	RETURNING 1
)
SELECT pg_notify($10, $11) FROM written`,

		update: `WITH written AS (
	UPDATE {s}.sessions AS old SET user_id = NULLIF($2::text, ''), handle = $3, generation = $4,
		version = $5, created_at = $6, expiry = $7, record = $8
	WHERE old.key = $1 AND old.version = $5::bigint - 1 AND old.expiry > $9
		AND old.generation >= COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = old.user_id), 0)
		AND $4::bigint >= ` + currentGeneration + `
	RETURNING 1
)
SELECT pg_notify($10, $11) FROM written`,

		commitState: `SELECT COALESCE((SELECT generation FROM {s}.user_generations WHERE user_id = NULLIF($2::text, '')), 0),
	EXISTS (SELECT 1 FROM ` + fmt.Sprintf(liveSessions, 3) + ` AND s.key = $1)`,

		// $4 is the revocation's marker, "" for none; the notifications
		// of one transaction are delivered in the order sent.
		delete: `WITH gone AS (DELETE FROM {s}.sessions WHERE key = $1)
SELECT pg_notify($2, $3) UNION ALL SELECT pg_notify($2, $4) WHERE $4 <> ''`,

		// Conflicts are checked in the index first, so for a known user
		// this writes nothing.
		ensureGeneration: `INSERT INTO {s}.user_generations (user_id, generation) VALUES ($1, 0)
	ON CONFLICT (user_id) DO NOTHING`,

		generation: `SELECT generation FROM {s}.user_generations WHERE user_id = $1`,

		bump: `INSERT INTO {s}.user_generations AS u (user_id, generation) VALUES ($1, 1)
	ON CONFLICT (user_id) DO UPDATE SET generation = u.generation + 1
	RETURNING generation`,

		revoke: `WITH gone AS (DELETE FROM {s}.sessions WHERE user_id = $1 AND generation < $2)
SELECT pg_notify($3, $4) UNION ALL SELECT pg_notify($3, $5) WHERE $5 <> ''`,

		lockGeneration: `SELECT generation FROM {s}.user_generations WHERE user_id = $1 FOR UPDATE`,

		// A live old session: unexpired, and of its user's current
		// generation (anonymous sessions have none). It answers the
		// version deleted, checked by Rotate against Rotation.OldVersion.
		deleteLive: `DELETE FROM {s}.sessions s WHERE s.key = $1 AND s.expiry > $2
	AND (s.user_id IS NULL OR s.generation = COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = s.user_id), 0))
	RETURNING s.version`,

		deleteAny: `DELETE FROM {s}.sessions WHERE key = $1`,

		liveVersion: `SELECT s.version FROM ` + fmt.Sprintf(liveSessions, 2) + ` AND s.key = $1`,

		// Like create, without the generation check Rotate made under
		// its lock, and without a NOTIFY: nobody caches a new key.
		insert: `INSERT INTO {s}.sessions AS old (key, user_id, handle, generation, version, created_at, expiry, record)
	VALUES ($1, NULLIF($2::text, ''), $3, $4, $5, $6, $7, $8)
	ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, handle = EXCLUDED.handle,
		generation = EXCLUDED.generation, version = EXCLUDED.version, created_at = EXCLUDED.created_at,
		expiry = EXCLUDED.expiry, record = EXCLUDED.record
	WHERE old.expiry <= $9::timestamptz
		OR old.generation < COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = old.user_id), 0)`,

		notify: `SELECT pg_notify($1, $2)`,

		// SKIP LOCKED lets several gateways purge at once without queuing
		// behind each other's batches.
		purge: `DELETE FROM {s}.sessions WHERE key IN (
	SELECT key FROM {s}.sessions WHERE expiry <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
	}
	for _, p := range []*string{&q.find, &q.list, &q.create, &q.update, &q.commitState, &q.delete,
		&q.ensureGeneration, &q.generation, &q.bump, &q.revoke, &q.purge,
		&q.lockGeneration, &q.deleteLive, &q.deleteAny, &q.liveVersion, &q.insert, &q.notify} {
		*p = strings.ReplaceAll(*p, "{s}", schema)
	}
	return q
}
