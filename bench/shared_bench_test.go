package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/redisstore"
)

// The shared stores run against real servers: the local ones, the ones named
// by CLOAKROOM_TEST_REDIS and CLOAKROOM_TEST_POSTGRES, or throwaway servers.

func benchRedis(b *testing.B, cacheTTL int) {
	addr := testservers.Redis(b)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	cfg := redisstore.Config{Prefix: testservers.RedisPrefix(b, addr)}
	if cacheTTL < 0 {
		cfg.CacheTTL = -1
	}
	store, err := redisstore.New(client, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	h, req := cloakroomRequest(b, store)
	run(b, h, req)
}

func BenchmarkCloakroomRedisCached(b *testing.B)   { benchRedis(b, 0) }
func BenchmarkCloakroomRedisUncached(b *testing.B) { benchRedis(b, -1) }

func benchPostgres(b *testing.B, cache bool) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testservers.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	var suffix [6]byte
	rand.Read(suffix[:])
	schema := fmt.Sprintf("bench_%x", suffix)
	defer pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
	store, err := pgstore.New(ctx, pool, pgstore.Config{Schema: schema, Cache: cache})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	h, req := cloakroomRequest(b, store)
	// The first requests may race the cache's own NOTIFY echo; let it settle.
	for i := 0; i < 3; i++ {
		h.ServeHTTP(&discardWriter{h: make(map[string][]string)}, req)
	}
	run(b, h, req)
}

func BenchmarkCloakroomPostgres(b *testing.B)       { benchPostgres(b, false) }
func BenchmarkCloakroomPostgresCached(b *testing.B) { benchPostgres(b, true) }
