package redisstore

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/storetest"
)

var scaleSessions = flag.Int("redis.scale", 0, "load this many sessions into a throwaway Redis and report the costs at scale (make scale); 0 skips TestScale")

// TestScale loads -redis.scale sessions (ten per user) into a Redis of its
// own through the store and logs what docs/benchmarks.md reports: memory
// per session, a session check warm and cold at 10,000 sessions and at the
// full count, BumpGeneration and List for users with 1, 100 and 10,000
// sessions, and the load rate. The figures are logged, not asserted.
func TestScale(t *testing.T) {
	n := *scaleSessions
	if n == 0 {
		t.Skip("set -redis.scale=N (make scale) to run")
	}
	srv := testservers.StartRedis(t)
	client := newTestClient(t, srv.Addr)
	warm := newTestStore(t, client, Config{})
	cold := newTestStore(t, client, Config{CacheTTL: -1})
	ctx := context.Background()

	const first = 10000
	base := usedMemory(t, client)
	began := time.Now()
	keys := load(t, warm, first, first/10, typicalRecord)
	t.Logf("%d sessions: %d bytes per session; check warm %v, cold %v", first,
		(usedMemory(t, client)-base)/first, findCost(t, warm, keys, true), findCost(t, cold, keys, false))

	rest := loadPrefixed(t, warm, n-first, (n-first)/10)
	elapsed := time.Since(began)
	keys = append(keys, rest...)
	t.Logf("%d sessions loaded in %v (%.0f sessions/s, through Commit); %d bytes per session; check warm %v, cold %v",
		n, elapsed.Round(time.Second), float64(n)/elapsed.Seconds(), (usedMemory(t, client)-base)/int64(n),
		findCost(t, warm, keys, true), findCost(t, cold, keys, false))

	for _, count := range []int{1, 100, 10000} {
		user := fmt.Sprintf("many-%d", count)
		now := time.Now()
		for i := 0; i < count; i++ {
			if err := warm.Commit(ctx, typicalRecord(user, now)); err != nil {
				t.Fatal(err)
			}
		}
		listBegan := time.Now()
		list, err := warm.List(ctx, user)
		listTook := time.Since(listBegan)
		if err != nil || len(list) != count {
			t.Fatalf("List(%s) = %d sessions, %v", user, len(list), err)
		}
		bumpBegan := time.Now()
		if _, err := cold.BumpGeneration(ctx, user); err != nil {
			t.Fatal(err)
		}
		t.Logf("user with %d sessions: List %v, BumpGeneration %v", count, listTook, time.Since(bumpBegan))
	}
}

// loadPrefixed loads n sessions for users numbered apart from load's.
func loadPrefixed(t *testing.T, s *Store, n, users int) []cloakroom.Key {
	return load(t, s, n, users, func(user string, now time.Time) cloakroom.Record {
		return typicalRecord("bulk-"+user, now)
	})
}

// findCost is the mean time of a Find over a sample of keys: warm, after
// each was found once (so from the client-side cache), or cold.
func findCost(t *testing.T, s *Store, keys []cloakroom.Key, warm bool) time.Duration {
	t.Helper()
	ctx := context.Background()
	sample := make([]cloakroom.Key, 1000)
	for i := range sample {
		sample[i] = keys[rand.IntN(len(keys))]
	}
	if warm {
		for _, k := range sample {
			warmFind(t, s, k)
		}
	}
	if warm {
		awaitLease(t, s) // a heavy load can hold the heartbeats back
		for _, k := range sample {
			warmFind(t, s, k)
		}
	}
	const rounds = 20
	began := time.Now()
	for r := 0; r < rounds; r++ {
		for _, k := range sample {
			if _, found, err := s.Find(ctx, k); err != nil || !found {
				t.Fatalf("Find: %v, %v", found, err)
			}
		}
	}
	return time.Since(began) / time.Duration(rounds*len(sample))
}

func warmFind(t *testing.T, s *Store, key cloakroom.Key) {
	t.Helper()
	for i := 0; i < 2; i++ {
		if _, found, err := s.Find(context.Background(), key); err != nil || !found {
			t.Fatalf("Find: %v, %v", found, err)
		}
	}
}

var _ = storetest.NewRecord
