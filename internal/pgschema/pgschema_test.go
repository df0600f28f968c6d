package pgschema

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom/internal/testservers"
)

func TestQuote(t *testing.T) {
	for name, want := range map[string]string{
		"cloakroom":             `"cloakroom"`,
		`odd "name"`:            `"odd ""name"""`,
		strings.Repeat("s", 63): `"` + strings.Repeat("s", 63) + `"`,
	} {
		if got, err := Quote(name); err != nil || got != want {
			t.Errorf("Quote(%q) = %s, %v; want %s", name, got, err, want)
		}
	}
	for _, name := range []string{strings.Repeat("s", 64), "bad\x00name"} {
		if got, err := Quote(name); err == nil {
			t.Errorf("Quote(%q) = %s, want an error", name, got)
		}
	}
}

// TestPrepare creates a missing schema, and then reports whether the
// table asked about exists in it.
func TestPrepare(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), testservers.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var b [6]byte
	rand.Read(b[:])
	name := "pgschema_test_" + hex.EncodeToString(b[:])
	quoted, err := Quote(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+quoted+" CASCADE") })

	prepare := func() bool {
		var exists bool
		err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
			var err error
			exists, err = Prepare(t.Context(), tx, name, quoted, "versions")
			return err
		})
		if err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		return exists
	}
	if prepare() {
		t.Fatal("the table exists in a schema just created")
	}
	var schemas int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_namespace WHERE nspname = $1", name).Scan(&schemas); err != nil || schemas != 1 {
		t.Fatalf("schema %s: %d found, %v", name, schemas, err)
	}
	if prepare() {
		t.Fatal("the table exists before it was created")
	}
	if _, err := pool.Exec(t.Context(), "CREATE TABLE "+quoted+".versions (v integer)"); err != nil {
		t.Fatal(err)
	}
	if !prepare() {
		t.Fatal("the table created is not reported")
	}
}
