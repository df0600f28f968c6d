package pgaccounts_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/accountstest"
	"github.com/cloakroom/cloakroom/accounts/pgaccounts"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
)

// testPool connects to the test server; the pool closes when t ends.
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := testservers.Postgres(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// freshSchema names a schema no other test uses and drops it when t ends.
func freshSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	schema := "accounts_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("dropping schema %s: %v", schema, err)
		}
	})
	return schema
}

func TestConformance(t *testing.T) {
	pool := testPool(t)
	accountstest.Run(t, func(t *testing.T) accounts.Store {
		s, err := pgaccounts.New(t.Context(), pool, freshSchema(t, pool))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestMigration(t *testing.T) {
	pool := testPool(t)
	ctx := t.Context()
	schema := freshSchema(t, pool)
	quoted := pgx.Identifier{schema}.Sanitize()

	s, err := pgaccounts.New(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := pool.QueryRow(ctx, "SELECT version FROM "+quoted+".cloakroom_accounts_schema WHERE id = 1").Scan(&version); err != nil || version != 3 {
		t.Fatalf("schema version = %d, %v; want 3", version, err)
	}
	if err := s.Create(ctx, accounts.Record{User: accounts.User{Name: "Alice"}, PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}

	// Opening again, as a restarted gateway does, keeps the data.
	s2, err := pgaccounts.New(ctx, pool, schema)
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	if got, err := s2.Get(ctx, "ALICE"); err != nil || got.Name != "Alice" {
		t.Fatalf("user lost across New: %+v, %v", got, err)
	}

	// A schema migrated by a newer build, during a rolling upgrade, is
	// used as it is and left at its version.
	if _, err := pool.Exec(ctx, "UPDATE "+quoted+".cloakroom_accounts_schema SET version = 3"); err != nil {
		t.Fatal(err)
	}
	s3, err := pgaccounts.New(ctx, pool, schema)
	if err != nil {
		t.Fatalf("New on a version-3 schema: %v", err)
	}
	if _, err := s3.Get(ctx, "alice"); err != nil {
		t.Errorf("Get on a version-3 schema: %v", err)
	}
	if err := pool.QueryRow(ctx, "SELECT version FROM "+quoted+".cloakroom_accounts_schema WHERE id = 1").Scan(&version); err != nil || version != 3 {
		t.Errorf("schema version after opening = %d, %v; want 3 left alone", version, err)
	}
}

// TestConcurrentStart starts several gateways at once on an empty
// schema, each creating the session and the account tables, as a rolling
// deployment does: every one must succeed.
func TestConcurrentStart(t *testing.T) {
	pool := testPool(t)
	schema := freshSchema(t, pool)
	const gateways = 6
	var wg sync.WaitGroup
	errs := make([]error, 2*gateways)
	for i := range gateways {
		wg.Go(func() {
			_, errs[2*i] = pgaccounts.New(t.Context(), pool, schema)
		})
		wg.Go(func() {
			st, err := pgstore.New(t.Context(), pool, pgstore.Config{Schema: schema, PurgeInterval: -1})
			if err == nil {
				st.Close()
			}
			errs[2*i+1] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("concurrent start: %v", err)
		}
	}
}

// TestSharesSchemaWithSessions checks that the account table sits
// next to pgstore's tables in one schema, in either order of creation.
func TestSharesSchemaWithSessions(t *testing.T) {
	pool := testPool(t)
	ctx := t.Context()
	schema := freshSchema(t, pool)
	sessions, err := pgstore.New(ctx, pool, pgstore.Config{Schema: schema, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer sessions.Close()
	if _, err := pgaccounts.New(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	var tables []string
	rows, err := pool.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := "aux_records cloakroom_accounts_schema cloakroom_users epoch schema_migrations sessions user_generations"
	if got := strings.Join(tables, " "); got != want {
		t.Errorf("tables in %s: %s, want %s", schema, got, want)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := pgaccounts.New(t.Context(), nil, ""); err == nil {
		t.Error("New(nil pool) succeeded")
	}
	pool := testPool(t)
	for _, schema := range []string{strings.Repeat("s", 64), "bad\x00name"} {
		if _, err := pgaccounts.New(t.Context(), pool, schema); err == nil {
			t.Errorf("New with schema %q succeeded", schema)
		}
	}
}

// TestQuotedSchema uses a schema name that needs quoting.
func TestQuotedSchema(t *testing.T) {
	pool := testPool(t)
	schema := freshSchema(t, pool) + `-Odd "name"`
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	s, err := pgaccounts.New(t.Context(), pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(t.Context(), accounts.Record{User: accounts.User{Name: "bob"}, PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	if users, err := s.List(t.Context()); err != nil || len(users) != 1 {
		t.Fatalf("List = %v, %v", users, err)
	}
}
