package vault_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

// The vault is sealed at rest: the SQLite file (and its WAL) never holds
// the raw token or any part of it that identifies it.
func TestVaultEncryptedAtRestInSQLite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions.db")
	store, err := sqlitestore.Open(context.Background(), path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	st := newStack(t, stackOptions{store: store})
	b := st.browser()
	b.register("kim")
	b.do("PUT", "/api/user", "application/json", `{"user":{"bio":"refreshed"}}`) // a second vaulted token
	if b.whoami() != "kim" {
		t.Fatal("not attached")
	}
	var files []byte
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, data...)
	}
	if !strings.Contains(string(files), "vault.token") {
		t.Fatal("the session values are not in the files read: the test checks nothing")
	}
	for _, tok := range st.backend.issued() {
		parts := strings.Split(tok, ".")
		for _, needle := range []string{tok, parts[0] + "." + parts[1], parts[1], parts[2]} {
			if strings.Contains(string(files), needle) {
				t.Fatalf("the database holds token material %.12s...", needle)
			}
		}
	}
}

// Redis and Postgres carry the vault between gateway nodes: log in through
// node A, call through node B. Each node opens the store on its own
// connection.
func TestVaultAcrossNodes(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		addr, prefix := testservers.RedisFresh(t)
		acrossNodes(t, func() cloakroom.Store {
			client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			s, err := redisstore.New(client, redisstore.Config{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		base := testservers.Postgres(t)
		schema := "cloakroom_vault_" + strings.ToLower(rand.Text()[:12])
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, base)
			if err != nil {
				t.Errorf("drop schema: %v", err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
		acrossNodes(t, func() cloakroom.Store {
			pool, err := pgxpool.New(context.Background(), base)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			s, err := pgstore.New(context.Background(), pool, pgstore.Config{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// acrossNodes runs two gateway nodes, each on a store open returns.
func acrossNodes(t *testing.T, open func() cloakroom.Store) {
	keys := testKeys(t)
	backend := newJWTBackend()
	a := newStack(t, stackOptions{store: open(), keys: keys, backend: backend})
	b := newStack(t, stackOptions{store: open(), keys: keys, backend: backend})

	onA := a.browser()
	onA.register("lena")
	onB := onA.on(b)
	if who := onB.whoami(); who != "lena" {
		t.Fatalf("node B acted as %q", who)
	}
	// A refresh through B is seen by A.
	onB.do("PUT", "/api/user", "application/json", `{"user":{"bio":"from B"}}`)
	issued := backend.issued()
	fresh := issued[len(issued)-1]
	onA.cookie = onB.cookie
	if onA.whoami() != "lena" {
		t.Fatal("node A lost the session")
	}
	if auth, _, _ := backend.last(); auth != "Token "+fresh {
		t.Fatal("node A attached the old token after B's refresh")
	}
	// Logout on B ends it for A (the users' ids here are numbers, as in
	// many JWT apps).
	if r := onB.do("POST", "/auth/logout", "", ""); r.status != http.StatusNoContent {
		t.Fatalf("logout on B: %d %s", r.status, r.body)
	}
	stale := &browser{st: a, srv: a.srv, cookie: onA.cookie, stored: onA.stored}
	if stale.whoami() != "" {
		t.Fatal("node A still attaches after logout on B")
	}
}
