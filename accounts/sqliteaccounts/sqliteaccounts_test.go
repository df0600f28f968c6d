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
	if err := db.QueryRowContext(ctx, "SELECT version FROM cloakroom_accounts_schema WHERE id = 1").Scan(&version); err != nil || version != 1 {
		t.Fatalf("schema version = %d, %v; want 1", version, err)
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
	if _, err := db.ExecContext(ctx, "UPDATE cloakroom_accounts_schema SET version = 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := sqliteaccounts.New(ctx, db); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("New on a version-2 schema: %v, want a 'newer' error", err)
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
		"INSERT INTO cloakroom_users VALUES ('mallory', '', 'not json', 0, 'h', 1, 1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "mallory"); err == nil || errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get of a row with corrupt roles: %v, want a decoding error", err)
	}
}
