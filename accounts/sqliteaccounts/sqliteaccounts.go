// Package sqliteaccounts is an [accounts.Store] in a SQLite database, the
// users' half of the embedded default: the gateway passes sqlitestore's
// handle, so sessions and users share one file and one writer connection.
// It expects a database opened with the modernc.org/sqlite driver but
// imports no driver itself.
package sqliteaccounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/internal/codec"
	"github.com/cloakroom/cloakroom/accounts/internal/sqlusers"
	"github.com/cloakroom/cloakroom/internal/sqlrows"
)

// sqliteSchemaVersion is the version of the cloakroom_users table this code
// reads and writes, recorded in cloakroom_accounts_schema.
// Version 2 added name_key, the accounts.FoldName of the name: SQLite's
// NOCASE folds ASCII letters only, and names are Unicode. Version 3 added
// second_factor, the accounts.Record.SecondFactor ("" for none). Version 4
// added passkeys, the accounts.Record.Passkeys ("" for none).
const sqliteSchemaVersion = 4

// Store is an [accounts.Store] in a cloakroom_users table of a SQLite
// database opened with the modernc.org/sqlite driver; the gateway passes
// the session store's handle (sqlitestore.Store.DB) so sessions and users
// share a file.
//
// Names are unique and looked up by name_key, their accounts.FoldName,
// computed in Go (SQLite's NOCASE folds ASCII letters only). Times are
// kept as Unix nanoseconds, roles as a JSON array.
type Store struct {
	db *sql.DB
}

// New creates or migrates the cloakroom_users table in db and returns a
// store on it. db is not closed by the store. The caller should open db
// with a busy_timeout and in WAL mode; the handle may have a single
// connection (sqlitestore's has): the store never holds two at once.
func New(ctx context.Context, db *sql.DB) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqliteaccounts: New with a nil *sql.DB")
	}
	if err := migrateSQLite(ctx, db); err != nil {
		return nil, fmt.Errorf("accounts: migrate SQLite schema: %w", err)
	}
	return &Store{db: db}, nil
}

// migrateSQLite brings the schema to sqliteSchemaVersion inside one
// BEGIN IMMEDIATE transaction, so processes starting together do not race,
// and refuses a database migrated by a newer build.
func migrateSQLite(ctx context.Context, db *sql.DB) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// Use a fresh context: ctx may be the reason we are rolling back.
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS cloakroom_accounts_schema (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		version INTEGER NOT NULL
	) STRICT`); err != nil {
		return err
	}
	var version int
	err = conn.QueryRowContext(ctx, "SELECT version FROM cloakroom_accounts_schema WHERE id = 1").Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if version > sqliteSchemaVersion {
		return fmt.Errorf("schema version %d is newer than this build's %d", version, sqliteSchemaVersion)
	}
	if version < 1 {
		if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS cloakroom_users (
			name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
			email TEXT NOT NULL,
			roles TEXT NOT NULL,
			disabled INTEGER NOT NULL CHECK (disabled IN (0, 1)),
			password_hash TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			password_changed_at INTEGER NOT NULL
		) STRICT, WITHOUT ROWID`); err != nil {
			return err
		}
	}
	if version < 2 {
		if err := addNameKey(ctx, conn); err != nil {
			return err
		}
	}
	if version < 3 {
		if _, err := conn.ExecContext(ctx, "ALTER TABLE cloakroom_users ADD COLUMN second_factor TEXT NOT NULL DEFAULT ''"); err != nil {
			return err
		}
	}
	if version < 4 {
		if _, err := conn.ExecContext(ctx, "ALTER TABLE cloakroom_users ADD COLUMN passkeys TEXT NOT NULL DEFAULT ''"); err != nil {
			return err
		}
	}
	if _, err := conn.ExecContext(ctx,
		"INSERT INTO cloakroom_accounts_schema (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
		sqliteSchemaVersion); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// addNameKey adds name_key to a version-1 table and fills it. Names of
// version 1 are ASCII, but the fold is computed in Go all the same, so
// the key is the same function of the name whatever wrote it.
func addNameKey(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "ALTER TABLE cloakroom_users ADD COLUMN name_key TEXT NOT NULL DEFAULT ''"); err != nil {
		return err
	}
	rows, err := conn.QueryContext(ctx, "SELECT name FROM cloakroom_users")
	if err != nil {
		return err
	}
	names, err := sqlrows.All(rows, func(rows *sql.Rows) (name string, err error) { return name, rows.Scan(&name) })
	rows.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, err := conn.ExecContext(ctx, "UPDATE cloakroom_users SET name_key = ? WHERE name = ?", accounts.FoldName(name), name); err != nil {
			return err
		}
	}
	_, err = conn.ExecContext(ctx, "CREATE UNIQUE INDEX cloakroom_users_name_key ON cloakroom_users (name_key)")
	return err
}

const userColumns = "name, email, roles, disabled, created_at, password_changed_at"

// Create implements [accounts.Store].
func (s *Store) Create(ctx context.Context, rec accounts.Record) error {
	roles, err := codec.EncodeRoles(rec.Roles)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO cloakroom_users (name, name_key, email, roles, disabled, password_hash, created_at, password_changed_at, second_factor, passkeys)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		rec.Name, accounts.FoldName(rec.Name), rec.Email, roles, rec.Disabled, rec.PasswordHash,
		codec.UnixNano(rec.CreatedAt), codec.UnixNano(rec.PasswordChangedAt), rec.SecondFactor, rec.Passkeys)
	if err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	} else if n == 0 {
		return fmt.Errorf("%w: %q", accounts.ErrUserExists, rec.Name)
	}
	return nil
}

// Get implements [accounts.Store].
func (s *Store) Get(ctx context.Context, name string) (accounts.Record, error) {
	row := s.db.QueryRowContext(ctx, "SELECT "+userColumns+", password_hash, second_factor, passkeys FROM cloakroom_users WHERE name_key = ?", accounts.FoldName(name))
	return sqlusers.Get(sql.ErrNoRows, func(rec *accounts.Record) (accounts.User, error) {
		return scanUser(row, &rec.PasswordHash, &rec.SecondFactor, &rec.Passkeys)
	})
}

// Update implements [accounts.Store]. It is one UPDATE ... RETURNING
// statement, so the IfPasswordHash, IfSecondFactor and IfPasskeys checks
// and the write are atomic.
func (s *Store) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	sets := []string{"name = name"} // keeps the statement valid for an empty change
	var args []any
	set := func(column string, v any) {
		sets = append(sets, column+" = ?")
		args = append(args, v)
	}
	if c.PasswordHash != nil {
		set("password_hash", *c.PasswordHash)
	}
	if c.PasswordChangedAt != nil {
		set("password_changed_at", codec.UnixNano(*c.PasswordChangedAt))
	}
	if c.Roles != nil {
		roles, err := codec.EncodeRoles(*c.Roles)
		if err != nil {
			return accounts.User{}, err
		}
		set("roles", roles)
	}
	if c.Email != nil {
		set("email", *c.Email)
	}
	if c.Disabled != nil {
		set("disabled", *c.Disabled)
	}
	if c.SecondFactor != nil {
		set("second_factor", *c.SecondFactor)
	}
	if c.Passkeys != nil {
		set("passkeys", *c.Passkeys)
	}
	query := "UPDATE cloakroom_users SET " + strings.Join(sets, ", ") + " WHERE name_key = ?"
	args = append(args, accounts.FoldName(name))
	if c.IfPasswordHash != "" {
		query += " AND password_hash = ?"
		args = append(args, c.IfPasswordHash)
	}
	if c.IfSecondFactor != nil {
		query += " AND second_factor = ?"
		args = append(args, *c.IfSecondFactor)
	}
	if c.IfPasskeys != nil {
		query += " AND passkeys = ?"
		args = append(args, *c.IfPasskeys)
	}
	query += " RETURNING " + userColumns

	u, err := scanUser(s.db.QueryRowContext(ctx, query, args...))
	return sqlusers.Updated(u, err, sql.ErrNoRows, c, func() (bool, error) {
		var exists bool
		err := s.db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM cloakroom_users WHERE name_key = ?)", accounts.FoldName(name)).Scan(&exists)
		return exists, err
	})
}

// Delete implements [accounts.Store].
func (s *Store) Delete(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM cloakroom_users WHERE name_key = ?", accounts.FoldName(name))
	if err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	} else if n == 0 {
		return accounts.ErrNoSuchUser
	}
	return nil
}

// List implements [accounts.Store].
func (s *Store) List(ctx context.Context) ([]accounts.User, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+userColumns+" FROM cloakroom_users ORDER BY name_key")
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	defer rows.Close()
	users, err := sqlrows.All(rows, func(rows *sql.Rows) (accounts.User, error) { return scanUser(rows) })
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	if users == nil {
		users = []accounts.User{} // an empty list, never null
	}
	return users, nil
}

// scanUser reads userColumns, then any extra destinations.
func scanUser(row interface{ Scan(...any) error }, extra ...any) (accounts.User, error) {
	var (
		u                  accounts.User
		roles              string
		created, pwChanged int64
	)
	dest := append([]any{&u.Name, &u.Email, &roles, &u.Disabled, &created, &pwChanged}, extra...)
	if err := row.Scan(dest...); err != nil {
		return accounts.User{}, err
	}
	if err := json.Unmarshal([]byte(roles), &u.Roles); err != nil {
		return accounts.User{}, fmt.Errorf("roles column of %q: %w", u.Name, err)
	}
	if u.Roles == nil {
		u.Roles = []string{}
	}
	u.CreatedAt = codec.FromUnixNano(created)
	u.PasswordChangedAt = codec.FromUnixNano(pwChanged)
	return u, nil
}
