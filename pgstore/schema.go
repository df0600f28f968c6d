package pgstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom/internal/pgschema"
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
	{
		// Sessions written before keep epoch 0, the epoch of a store never
		// bumped; adding a column with a constant default rewrites nothing.
		name: "global epoch and auxiliary records",
		sql: `
ALTER TABLE {s}.sessions ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
CREATE TABLE {s}.epoch (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	epoch     bigint NOT NULL
);
CREATE TABLE {s}.aux_records (
	key                bytea PRIMARY KEY,
	version            bigint NOT NULL,
	expires            timestamptz NOT NULL,
	ends_with_sessions boolean NOT NULL,
	epoch              bigint NOT NULL,
	data               bytea NOT NULL
);
CREATE INDEX aux_records_expires ON {s}.aux_records (expires);`,
	},
}

// migrate applies the steps (migrations, in New) that schema lacks, under
// the lock that serializes the migrations of the schema (see pgschema).
func migrate(ctx context.Context, pool *pgxpool.Pool, name, schema string, steps []migration) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		tableExists, err := pgschema.Prepare(ctx, tx, name, schema, "schema_migrations")
		if err != nil {
			return err
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
		for version := applied + 1; version <= len(steps); version++ {
			m := steps[version-1]
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

// epochPayload announces the global epoch's new value.
func epochPayload(epoch int64) string { return prefixEpoch + strconv.FormatInt(epoch, 10) }

// queries are the statements a Store runs, with its schema filled in.
//
// Parameters common to create and update: $1 key, $2 user ID ("" for
// anonymous, stored as NULL), $3 handle, $4 generation, $5 version,
// $6 created_at, $7 expiry, $8 record, $9 epoch, $10 now, $11 channel,
// $12 payload. The casts are needed where an INSERT ... SELECT cannot
// infer types.
type queries struct {
	find, list, create, update, commitState, delete   string
	ensureGeneration, generation, bump, revoke, purge string
	epoch, bumpEpoch, endEpoch                        string

	// Rotate's: $1 key and $2 now unless noted.
	lockGeneration        string // $1 user ID
	deleteLive, deleteAny string // deleteAny: $1 only
	insert                string // parameters $1 to $10 as for create
	notify                string // $1 channel, $2 payload

	// Auxiliary records': $1 key, $2 version, $3 expires, $4 ends with
	// sessions, $5 epoch, $6 data, $7 now; findAux, auxState: $1 key,
	// $2 now.
	findAux, createAux, updateAux, auxState, deleteAux, purgeAux string
}

// currentEpoch is the global epoch, 0 until the first bump. Writes do not
// lock it: a write that raced a bump and checked the old epoch leaves a
// row that every read below then finds dead.
const currentEpoch = `COALESCE((SELECT e.epoch FROM {s}.epoch e), 0)`

// A session is live when it has not expired at the Go-side now, its
// generation is not below its user's (anonymous sessions, user_id NULL,
// join no generation row) and its epoch is not below the current one.
const liveSessions = `{s}.sessions s
	LEFT JOIN {s}.user_generations g ON g.user_id = s.user_id
	WHERE s.expiry > $%d AND s.generation >= COALESCE(g.generation, 0)
	AND s.epoch >= ` + currentEpoch

// deadOld is when the stored row "old" that a new session's key collides
// with is expired at $10 or revoked, and so counts as absent.
const deadOld = `old.expiry <= $10::timestamptz
		OR old.generation < COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = old.user_id), 0)
		OR old.epoch < ` + currentEpoch

// upsertSession writes $1 to $9 into a new row, or over a dead one.
const upsertSession = `INTO {s}.sessions AS old (key, user_id, handle, generation, version, created_at, expiry, record, epoch)
	%s
	ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, handle = EXCLUDED.handle,
		generation = EXCLUDED.generation, version = EXCLUDED.version, created_at = EXCLUDED.created_at,
		expiry = EXCLUDED.expiry, record = EXCLUDED.record, epoch = EXCLUDED.epoch
	WHERE ` + deadOld

// renewable is the old session of a rotation ($1, at $2 now): unexpired,
// of its user's current generation (anonymous sessions have none) and of
// the current epoch.
const renewable = `s.key = $1 AND s.expiry > $2
	AND (s.user_id IS NULL OR s.generation = COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = s.user_id), 0))
	AND s.epoch = ` + currentEpoch

// currentGeneration locks the committing user's generation row, if any,
// until the statement's transaction ends.
const currentGeneration = `COALESCE((SELECT generation FROM {s}.user_generations WHERE user_id = NULLIF($2::text, '') FOR SHARE), 0)`

// liveAux is when the auxiliary record a is found at now ($%d): unexpired,
// and of an epoch not below the current one if it ends with the sessions.
const liveAux = `a.expires > $%d AND (NOT a.ends_with_sessions OR a.epoch >= ` + currentEpoch + `)`

// auxEpochValid refuses to write a record that ends with the sessions
// under a past epoch.
const auxEpochValid = `(NOT $4::boolean OR $5::bigint >= ` + currentEpoch + `)`

// purgeExpired deletes up to $2 rows of a table whose expiry column is at
// or before $1. SKIP LOCKED lets several gateways purge at once without
// queuing behind each other's batches.
const purgeExpired = `DELETE FROM {s}.%[1]s WHERE key IN (
	SELECT key FROM {s}.%[1]s WHERE %[2]s <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`

func newQueries(schema string) queries {
	q := queries{
		find: `SELECT s.record FROM ` + fmt.Sprintf(liveSessions, 2) + ` AND s.key = $1`,

		list: `SELECT s.record FROM ` + fmt.Sprintf(liveSessions, 2) + ` AND s.user_id = $1
	ORDER BY s.created_at, s.handle`,

		// A stored session that is expired or revoked counts as absent
		// and is replaced.
		create: `WITH written AS (
	INSERT ` + fmt.Sprintf(upsertSession, `SELECT $1::bytea, NULLIF($2::text, ''), $3::text, $4::bigint, $5::bigint, $6::timestamptz, $7::timestamptz, $8::bytea, $9::bigint
	WHERE $4::bigint >= `+currentGeneration+` AND $9::bigint >= `+currentEpoch) + `
	RETURNING 1
)
SELECT pg_notify($11, $12) FROM written`,

		update: `WITH written AS (
	UPDATE {s}.sessions AS old SET user_id = NULLIF($2::text, ''), handle = $3, generation = $4,
		version = $5, created_at = $6, expiry = $7, record = $8, epoch = $9
	WHERE old.key = $1 AND old.version = $5::bigint - 1 AND old.expiry > $10
		AND old.generation >= COALESCE((SELECT g.generation FROM {s}.user_generations g WHERE g.user_id = old.user_id), 0)
		AND old.epoch >= ` + currentEpoch + `
		AND $4::bigint >= ` + currentGeneration + `
		AND $9::bigint >= ` + currentEpoch + `
	RETURNING 1
)
SELECT pg_notify($11, $12) FROM written`,

		commitState: `SELECT COALESCE((SELECT generation FROM {s}.user_generations WHERE user_id = NULLIF($2::text, '')), 0),
	` + currentEpoch + `,
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

		epoch: `SELECT ` + currentEpoch,

		bumpEpoch: `INSERT INTO {s}.epoch AS e (epoch) VALUES (1)
	ON CONFLICT (singleton) DO UPDATE SET epoch = e.epoch + 1
	RETURNING epoch`,

		// $1 the new epoch, then as revoke. The bump is found dead by
		// every read once committed; deleting is housekeeping.
		endEpoch: `WITH gone AS (DELETE FROM {s}.sessions WHERE epoch < $1),
	gone_aux AS (DELETE FROM {s}.aux_records WHERE ends_with_sessions AND epoch < $1)
SELECT pg_notify($2, $3) UNION ALL SELECT pg_notify($2, $4) WHERE $4 <> ''`,

		lockGeneration: `SELECT generation FROM {s}.user_generations WHERE user_id = $1 FOR UPDATE`,

		// It answers the version deleted, checked by Rotate against
		// Rotation.OldVersion.
		deleteLive: `DELETE FROM {s}.sessions s WHERE ` + renewable + ` RETURNING s.version`,

		deleteAny: `DELETE FROM {s}.sessions WHERE key = $1`,

		// Like create, without the generation check Rotate made under
		// its lock, nor the epoch check it makes afterwards, and without
		// a NOTIFY: nobody caches a new key.
		insert: `INSERT ` + fmt.Sprintf(upsertSession, `VALUES ($1, NULLIF($2::text, ''), $3, $4, $5, $6, $7, $8, $9)`),

		notify: `SELECT pg_notify($1, $2)`,

		purge: fmt.Sprintf(purgeExpired, "sessions", "expiry"),

		findAux: `SELECT a.version, a.expires, a.ends_with_sessions, a.epoch, a.data FROM {s}.aux_records a
	WHERE a.key = $1 AND ` + fmt.Sprintf(liveAux, 2),

		// A stored record that is expired or ended counts as absent and
		// is replaced.
		createAux: `INSERT INTO {s}.aux_records AS a (key, version, expires, ends_with_sessions, epoch, data)
	SELECT $1::bytea, $2::bigint, $3::timestamptz, $4::boolean, $5::bigint, $6::bytea
	WHERE ` + auxEpochValid + `
	ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, expires = EXCLUDED.expires,
		ends_with_sessions = EXCLUDED.ends_with_sessions, epoch = EXCLUDED.epoch, data = EXCLUDED.data
	WHERE NOT (` + fmt.Sprintf(liveAux, 7) + `)`,

		updateAux: `UPDATE {s}.aux_records AS a SET version = $2, expires = $3, ends_with_sessions = $4, epoch = $5, data = $6
	WHERE a.key = $1 AND a.version = $2::bigint - 1 AND ` + fmt.Sprintf(liveAux, 7) + ` AND ` + auxEpochValid,

		// The live record's version, 0 for none.
		auxState: `SELECT ` + currentEpoch + `,
	COALESCE((SELECT a.version FROM {s}.aux_records a WHERE a.key = $1 AND ` + fmt.Sprintf(liveAux, 2) + `), 0)`,

		deleteAux: `DELETE FROM {s}.aux_records WHERE key = $1`,

		purgeAux: fmt.Sprintf(purgeExpired, "aux_records", "expires"),
	}
	for _, p := range []*string{&q.find, &q.list, &q.create, &q.update, &q.commitState, &q.delete,
		&q.ensureGeneration, &q.generation, &q.bump, &q.revoke, &q.purge, &q.epoch, &q.bumpEpoch, &q.endEpoch,
		&q.lockGeneration, &q.deleteLive, &q.deleteAny, &q.insert, &q.notify,
		&q.findAux, &q.createAux, &q.updateAux, &q.auxState, &q.deleteAux, &q.purgeAux} {
		*p = strings.ReplaceAll(*p, "{s}", schema)
	}
	return q
}
