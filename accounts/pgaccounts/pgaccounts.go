// Package pgaccounts keeps the gateway's user accounts and its shared login
// throttle in PostgreSQL, next to pgstore's sessions: [Store] is an
// [accounts.Store], [Throttle] an [accounts.ThrottleStore] every gateway
// node on the database shares. Both reach the database through a pgx pool
// the caller owns, and migrate their tables in the schema pgstore uses,
// under the same advisory lock.
package pgaccounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/internal/codec"
	"github.com/cloakroom/cloakroom/accounts/internal/sqlusers"
	"github.com/cloakroom/cloakroom/internal/pgschema"
)

// postgresSchemaVersion is the version of the cloakroom_users table this
// code reads and writes, recorded in cloakroom_accounts_schema. Version 2
// added second_factor (accounts.Record.SecondFactor, ” for none), version
// 3 passkeys (accounts.Record.Passkeys, ” for none).
const postgresSchemaVersion = 3

// DefaultSchema is the schema [New] and [NewThrottle] use when given "".
// It is pgstore's default too, so users and sessions sit side by side.
const DefaultSchema = "cloakroom"

// Store is an [accounts.Store] in the table cloakroom_users of a
// PostgreSQL schema, reached through a pgx pool the caller owns (the gateway passes
// the session store's pool, so sessions and users share a database).
//
// The primary key is the name folded by accounts.FoldName (PRECIS; an
// ASCII name's lower case) in Go, not by PostgreSQL's lower(), whose result depends on the database's
// locale; the name keeps its case in a column of its own. Roles are a
// text[], times timestamptz (microseconds).
type Store struct {
	pool *pgxpool.Pool
	q    postgresQueries
}

type postgresQueries struct {
	create, get, update, exists, delete, list string
}

// New creates or migrates the cloakroom_users table in schema
// (DefaultSchema when "") and returns a store on it. The pool is
// not closed by the store.
//
// The migration runs in one transaction under the advisory lock pgstore's
// migration of the same schema takes, so gateways starting together do not
// race. Like pgstore's, it leaves a schema migrated by a newer build alone
// (migrations only ever add), so a rolling upgrade can run old and new
// gateways side by side. A role without the CREATE privilege can use a
// schema an administrator migrated.
func New(ctx context.Context, pool *pgxpool.Pool, schema string) (*Store, error) {
	schema, quoted, err := checkArgs("New", pool, schema)
	if err != nil {
		return nil, err
	}
	if err := migratePostgres(ctx, pool, schema, quoted); err != nil {
		return nil, fmt.Errorf("accounts: migrate PostgreSQL schema %s: %w", quoted, err)
	}
	return &Store{pool: pool, q: newPostgresQueries(quoted)}, nil
}

// checkArgs checks the arguments of New and NewThrottle (fn) and returns
// the schema to use, DefaultSchema for "", and its name quoted for SQL.
func checkArgs(fn string, pool *pgxpool.Pool, schema string) (name, quoted string, err error) {
	if pool == nil {
		return "", "", fmt.Errorf("pgaccounts: %s with a nil pool", fn)
	}
	if schema == "" {
		schema = DefaultSchema
	}
	quoted, err = pgschema.Quote(schema)
	if err != nil {
		return "", "", fmt.Errorf("accounts: %w", err)
	}
	return schema, quoted, nil
}

// migratePostgres brings the accounts tables in schema (quoted: its
// sanitized identifier) to postgresSchemaVersion.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, schema, quoted string) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return migratePostgresTx(ctx, tx, schema, quoted) })
}

// migratePostgresTx is migratePostgres in tx. It runs under the lock
// pgstore's migration of the same schema takes (see pgschema): CREATE
// SCHEMA, even with IF NOT EXISTS, fails when another transaction creates
// the same schema at once. TestConcurrentStart checks that the two
// migrations queue behind one another.
func migratePostgresTx(ctx context.Context, tx pgx.Tx, schema, quoted string) error {
	versionTableExists, err := pgschema.Prepare(ctx, tx, schema, quoted, "cloakroom_accounts_schema")
	if err != nil {
		return err
	}
	version := 0
	if versionTableExists {
		err := tx.QueryRow(ctx, "SELECT version FROM "+quoted+".cloakroom_accounts_schema WHERE id = 1").Scan(&version)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	if version >= postgresSchemaVersion {
		// Nothing to write, so no privilege needed. A newer schema is
		// left alone, as pgstore does: migrations only add, so gateways
		// of the previous release keep working during a rolling upgrade.
		return nil
	}
	if !versionTableExists {
		if _, err := tx.Exec(ctx, `CREATE TABLE `+quoted+`.cloakroom_accounts_schema (
	id      integer PRIMARY KEY CHECK (id = 1),
	version integer NOT NULL
)`); err != nil {
			return err
		}
	}
	if version < 1 {
		if _, err := tx.Exec(ctx, `CREATE TABLE `+quoted+`.cloakroom_users (
	name_folded         text COLLATE "C" PRIMARY KEY,
	name                text NOT NULL,
	email               text NOT NULL,
	roles               text[] NOT NULL,
	disabled            boolean NOT NULL,
	password_hash       text NOT NULL,
	created_at          timestamptz NOT NULL,
	password_changed_at timestamptz NOT NULL
)`); err != nil {
			return err
		}
	}
	if version < 2 {
		if _, err := tx.Exec(ctx, `ALTER TABLE `+quoted+`.cloakroom_users ADD COLUMN IF NOT EXISTS second_factor text NOT NULL DEFAULT ''`); err != nil {
			return err
		}
	}
	if version < 3 {
		if _, err := tx.Exec(ctx, `ALTER TABLE `+quoted+`.cloakroom_users ADD COLUMN IF NOT EXISTS passkeys text NOT NULL DEFAULT ''`); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+quoted+".cloakroom_accounts_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
		postgresSchemaVersion)
	return err
}

const postgresUserColumns = "name, email, roles, disabled, created_at, password_changed_at"

func newPostgresQueries(quoted string) postgresQueries {
	table := quoted + ".cloakroom_users"
	return postgresQueries{
		create: `INSERT INTO ` + table + ` (name_folded, name, email, roles, disabled, password_hash, created_at, password_changed_at, second_factor, passkeys)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (name_folded) DO NOTHING`,
		get: `SELECT ` + postgresUserColumns + `, password_hash, second_factor, passkeys FROM ` + table + ` WHERE name_folded = $1`,
		// One statement, so the IfPasswordHash, IfSecondFactor and
		// IfPasskeys checks
		// and the write are atomic; NULL parameters keep the column's
		// value, and a NULL condition checks nothing.
		update: `UPDATE ` + table + ` SET
	password_hash = COALESCE($2::text, password_hash),
	password_changed_at = COALESCE($3::timestamptz, password_changed_at),
	roles = COALESCE($4::text[], roles),
	email = COALESCE($5::text, email),
	disabled = COALESCE($6::boolean, disabled),
	second_factor = COALESCE($8::text, second_factor),
	passkeys = COALESCE($10::text, passkeys)
WHERE name_folded = $1 AND ($7::text = '' OR password_hash = $7::text)
	AND ($9::text IS NULL OR second_factor = $9::text)
	AND ($11::text IS NULL OR passkeys = $11::text)
RETURNING ` + postgresUserColumns,
		exists: `SELECT EXISTS (SELECT 1 FROM ` + table + ` WHERE name_folded = $1)`,
		delete: `DELETE FROM ` + table + ` WHERE name_folded = $1`,
		list:   `SELECT ` + postgresUserColumns + ` FROM ` + table + ` ORDER BY name_folded`,
	}
}

// Create implements [accounts.Store].
func (s *Store) Create(ctx context.Context, rec accounts.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	tag, err := s.pool.Exec(ctx, s.q.create,
		accounts.FoldName(rec.Name), rec.Name, rec.Email, codec.NonNilRoles(rec.Roles), rec.Disabled, rec.PasswordHash,
		rec.CreatedAt, rec.PasswordChangedAt, rec.SecondFactor, rec.Passkeys)
	if err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", accounts.ErrUserExists, rec.Name)
	}
	return nil
}

// Get implements [accounts.Store].
func (s *Store) Get(ctx context.Context, name string) (accounts.Record, error) {
	if err := ctx.Err(); err != nil {
		return accounts.Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	row := s.pool.QueryRow(ctx, s.q.get, accounts.FoldName(name))
	return sqlusers.Get(pgx.ErrNoRows, func(rec *accounts.Record) (accounts.User, error) {
		return scanPostgresUser(row, &rec.PasswordHash, &rec.SecondFactor, &rec.Passkeys)
	})
}

// Update implements [accounts.Store].
func (s *Store) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	if err := ctx.Err(); err != nil {
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	var roles any // a typed nil []string would still be an argument
	if c.Roles != nil {
		roles = codec.NonNilRoles(*c.Roles)
	}
	key := accounts.FoldName(name)
	u, err := scanPostgresUser(s.pool.QueryRow(ctx, s.q.update, key,
		c.PasswordHash, c.PasswordChangedAt, roles, c.Email, c.Disabled, c.IfPasswordHash, c.SecondFactor, c.IfSecondFactor, c.Passkeys, c.IfPasskeys))
	return sqlusers.Updated(u, err, pgx.ErrNoRows, c, func() (bool, error) {
		var exists bool
		err := s.pool.QueryRow(ctx, s.q.exists, key).Scan(&exists)
		return exists, err
	})
}

// Delete implements [accounts.Store].
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	tag, err := s.pool.Exec(ctx, s.q.delete, accounts.FoldName(name))
	if err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return accounts.ErrNoSuchUser
	}
	return nil
}

// List implements [accounts.Store].
func (s *Store) List(ctx context.Context) ([]accounts.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	rows, err := s.pool.Query(ctx, s.q.list)
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	// CollectRows closes rows and returns [] (not nil) when there are none.
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (accounts.User, error) { return scanPostgresUser(row) })
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	return users, nil
}

// scanPostgresUser reads postgresUserColumns, then any extra destinations.
func scanPostgresUser(row pgx.Row, extra ...any) (accounts.User, error) {
	var u accounts.User
	dest := append([]any{&u.Name, &u.Email, &u.Roles, &u.Disabled, &u.CreatedAt, &u.PasswordChangedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return accounts.User{}, err
	}
	u.Roles = codec.NonNilRoles(u.Roles)
	u.CreatedAt, u.PasswordChangedAt = utcTime(u.CreatedAt), utcTime(u.PasswordChangedAt)
	return u, nil
}

// utcTime returns t in UTC; pgx gives timestamptz values in time.Local.
func utcTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
