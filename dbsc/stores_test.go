package dbsc_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/cloakroom/cloakroom/sqlitestore"
	"github.com/cloakroom/cloakroom/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

// storeCase opens a fresh, isolated store of one kind on clock.
type storeCase struct {
	name string
	open func(t *testing.T, clock *storetest.Clock) cloakroom.Store
}

// everyStore lists every store the binder must work on: the memory store,
// SQLite, PostgreSQL (with and without its cache), Redis (with and without
// its client-side cache), and a Redis Cluster when
// $CLOAKROOM_TEST_REDIS_CLUSTER asks for one.
func everyStore(t *testing.T) []storeCase {
	cases := []storeCase{
		{"memstore", func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
			s := memstore.New(memstore.Config{Now: clock.Now})
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"sqlitestore", func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
			s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{Now: clock.Now, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, cached := range []bool{false, true} {
		name := "pgstore"
		if cached {
			name += "-cached"
		}
		cases = append(cases, storeCase{name, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
			pool, err := pgxpool.New(context.Background(), testservers.Postgres(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			schema := "cloakroom_test_" + strings.ToLower(rand.Text()[:12])
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, _ = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			})
			s, err := pgstore.New(context.Background(), pool, pgstore.Config{Schema: schema, Now: clock.Now, Cache: cached, CacheLease: 100 * time.Millisecond, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	}
	for _, cacheTTL := range []time.Duration{-1, 0} {
		name := "redisstore"
		if cacheTTL == 0 {
			name += "-cached"
		}
		cases = append(cases, storeCase{name, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
			addr, prefix := testservers.RedisFresh(t)
			return openRedis(t, []string{addr}, prefix, cacheTTL, clock)
		}})
	}
	if testservers.RedisClusterWanted() {
		cases = append(cases, storeCase{"redis-cluster", func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
			seeds := testservers.RedisCluster(t)
			return openRedis(t, seeds, testservers.RedisPrefix(t, seeds[0]), 0, clock)
		}})
	}
	return cases
}

func openRedis(t *testing.T, addrs []string, prefix string, cacheTTL time.Duration, clock *storetest.Clock) cloakroom.Store {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	s, err := redisstore.New(client, redisstore.Config{Prefix: prefix, CacheTTL: cacheTTL, CacheLease: 100 * time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
