package sqliteaccounts_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/accountstest"
	"github.com/cloakroom/cloakroom/accounts/sqliteaccounts"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

// openSQLite opens a fresh database at path the way the gateway does: a
// sqlitestore, whose one-connection writer handle the accounts share. A
// store that needed two connections at once would deadlock here.
func openSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	// Durability is not under test; fsyncs would dominate run time.
	st, err := sqlitestore.Open(t.Context(), path, sqlitestore.Config{PurgeInterval: -1, RelaxedDurability: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st.DB()
}

func TestConformance(t *testing.T) {
	accountstest.Run(t, func(t *testing.T) accounts.Store {
		s, err := sqliteaccounts.New(t.Context(), openSQLite(t, filepath.Join(t.TempDir(), "cloakroom.db")))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloakroom.db")
	db := openSQLite(t, path)
	ctx := t.Context()

	// The caller's own tables are left alone.
	if _, err := db.ExecContext(ctx, "CREATE TABLE app_things (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	s, err := sqliteaccounts.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := db.QueryRowContext(ctx, "SELECT version FROM cloakroom_accounts_schema WHERE id = 1").Scan(&version); err != nil || version != 4 {
		t.Fatalf("schema version = %d, %v; want 4", version, err)
	}
	if err := s.Create(ctx, accounts.Record{User: accounts.User{Name: "alice"}, PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}

	// Opening again, as a restarted gateway does, keeps the data.
	s2, err := sqliteaccounts.New(ctx, db)
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	if _, err := s2.Get(ctx, "alice"); err != nil {
		t.Fatalf("user lost across New: %v", err)
	}
	var tables int
	db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('app_things', 'cloakroom_users', 'cloakroom_accounts_schema')").Scan(&tables)
	if tables != 3 {
		t.Errorf("%d of the 3 expected tables exist", tables)
	}

	// A database migrated by a newer build is refused, not misread.
	if _, err := db.ExecContext(ctx, "UPDATE cloakroom_accounts_schema SET version = 5"); err != nil {
		t.Fatal(err)
	}
	if _, err := sqliteaccounts.New(ctx, db); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("New on a version-5 schema: %v, want a 'newer' error", err)
	}
}

// TestMigrationFromASCIINames: a version-1 database, whose names were
// unique under NOCASE, gets its name keys, and every account keeps its
// identity: found in any case, its name's case variants still taken.
func TestMigrationFromASCIINames(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "cloakroom.db"))
	ctx := t.Context()
	for _, stmt := range []string{
		`CREATE TABLE cloakroom_accounts_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL) STRICT`,
		`INSERT INTO cloakroom_accounts_schema VALUES (1, 1)`,
		`CREATE TABLE cloakroom_users (
			name TEXT NOT NULL PRIMARY KEY COLLATE NOCASE, email TEXT NOT NULL, roles TEXT NOT NULL,
			disabled INTEGER NOT NULL CHECK (disabled IN (0, 1)), password_hash TEXT NOT NULL,
			created_at INTEGER NOT NULL, password_changed_at INTEGER NOT NULL
		) STRICT, WITHOUT ROWID`,
		`INSERT INTO cloakroom_users VALUES ('Alice.Smith', '', '["admin"]', 0, 'h1', 1, 1), ('bob', '', '[]', 0, 'h2', 1, 1)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sqliteaccounts.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"alice.smith": "Alice.Smith", "ALICE.SMITH": "Alice.Smith", "BOB": "bob"} {
		if rec, err := s.Get(ctx, name); err != nil || rec.Name != want || rec.PasswordHash == "" || rec.SecondFactor != "" || rec.Passkeys != "" {
			t.Errorf("Get(%q) after migration = %+v, %v; want %s", name, rec, err, want)
		}
	}
	if err := s.Create(ctx, accounts.Record{User: accounts.User{Name: "ALICE.smith"}, PasswordHash: "h"}); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("Create(ALICE.smith) after migration: %v, want ErrUserExists", err)
	}
	if err := s.Create(ctx, accounts.Record{User: accounts.User{Name: "Zoë"}, PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Get(ctx, "ZOË"); err != nil || rec.Name != "Zoë" {
		t.Errorf("Get(ZOË) = %+v, %v", rec, err)
	}
}

func TestNewNil(t *testing.T) {
	if _, err := sqliteaccounts.New(t.Context(), nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestCorruptRoles(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "cloakroom.db"))
	s, err := sqliteaccounts.New(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(),
		"INSERT INTO cloakroom_users VALUES ('mallory', '', 'not json', 0, 'h', 1, 1, 'mallory', '', '')"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "mallory"); err == nil || errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get of a row with corrupt roles: %v, want a decoding error", err)
	}
}
