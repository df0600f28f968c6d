package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// freshSchema names a schema no other test uses and drops it when t ends.
func freshSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	schema := "cloakroom_test_" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// newStore opens a store; its Close is registered after the schema's
// drop, so it runs first.
func newStore(t testing.TB, pool *pgxpool.Pool, cfg pgstore.Config) *pgstore.Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := pgstore.New(context.Background(), pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	pool := newPool(t, testservers.Postgres(t))
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("Cache=%v", cached), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
				// A short lease: a store's revocations wait up to a
				// lease while it has listened for less (see hub).
				return newStore(t, pool, pgstore.Config{Schema: freshSchema(t, pool), Now: clock.Now, Cache: cached, CacheLease: 100 * time.Millisecond})
			})
		})
	}
}

func countRows(t testing.TB, pool *pgxpool.Pool, schema, table string) int {
	t.Helper()
	var n int
	err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testservers.Postgres(t))
	schema := freshSchema(t, pool)

	// Gateways starting together on an empty database.
	const gateways = 8
	stores := make([]*pgstore.Store, gateways)
	errs := make([]error, gateways)
	var wg sync.WaitGroup
	for i := range gateways {
		wg.Go(func() {
			stores[i], errs[i] = pgstore.New(ctx, pool, pgstore.Config{Schema: schema, Logger: quiet})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("gateway %d: New: %v", i, err)
		}
		stores[i].Close()
	}
	if n := countRows(t, pool, schema, "schema_migrations"); n != pgstore.MigrationCount {
		t.Fatalf("schema_migrations has %d rows, want %d", n, pgstore.MigrationCount)
	}

	// A restart finds the schema current and keeps the data.
	clock := storetest.NewClock(storetest.Start)
	first := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now})
	rec := storetest.NewRecord("alice", clock.Now())
	if err := first.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	again := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now})
	if _, found, err := again.Find(ctx, rec.Key); err != nil || !found {
		t.Fatalf("Find after second New = %v, %v; want found", found, err)
	}
	if n := countRows(t, pool, schema, "schema_migrations"); n != pgstore.MigrationCount {
		t.Fatalf("after second New, schema_migrations has %d rows, want %d", n, pgstore.MigrationCount)
	}
}

func TestPurgeInBatches(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testservers.Postgres(t))
	schema := freshSchema(t, pool)
	clock := storetest.NewClock(storetest.Start)
	s := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now, PurgeInterval: -1, PurgeBatch: 10})
	var batches []int64
	pgstore.OnPurgeBatch(s, func(n int64) { batches = append(batches, n) })

	var short, long []cloakroom.Record
	for i := range 30 {
		rec := storetest.NewRecord(fmt.Sprintf("user%d", i%3), clock.Now())
		if i < 25 {
			rec.IdleTimeout = time.Minute
			short = append(short, rec)
		} else {
			long = append(long, rec)
		}
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	// Auxiliary records expire by their own clock; 12 of 15 with the
	// short sessions.
	var liveAux []cloakroom.AuxRecord
	for i := range 15 {
		rec := cloakroom.AuxRecord{Key: cloakroom.AuxKey("pgstore_test", "purge", fmt.Sprint(i)), Version: 1, Expires: clock.Now().Add(time.Minute)}
		if i >= 12 {
			rec.Expires = clock.Now().Add(time.Hour)
			liveAux = append(liveAux, rec)
		}
		if err := s.CommitAux(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing has expired yet: the clock is the store's, not the database's.
	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("Purge before expiry = %d, %v; want 0", n, err)
	}
	clock.Advance(time.Minute)
	batches = nil
	n, err := s.Purge(ctx)
	if err != nil || n != int64(len(short)+12) {
		t.Fatalf("Purge = %d, %v; want %d", n, err, len(short)+12)
	}
	if want := []int64{10, 10, 5, 10, 2}; !slices.Equal(batches, want) {
		t.Fatalf("purge batches = %v, want %v (sessions, then records)", batches, want)
	}
	if got := countRows(t, pool, schema, "sessions"); got != len(long) {
		t.Fatalf("%d sessions left, want %d", got, len(long))
	}
	if got := countRows(t, pool, schema, "aux_records"); got != len(liveAux) {
		t.Fatalf("%d auxiliary records left, want %d", got, len(liveAux))
	}
	for _, rec := range liveAux {
		if _, found, err := s.FindAux(ctx, rec.Key); err != nil || !found {
			t.Fatalf("live record after purge: found=%v err=%v", found, err)
		}
	}
	for _, rec := range long {
		if _, found, err := s.Find(ctx, rec.Key); err != nil || !found {
			t.Fatalf("live session after purge: found=%v err=%v", found, err)
		}
	}

	// The background purge does the same on its own.
	newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now, PurgeInterval: 10 * time.Millisecond, PurgeBatch: 2})
	clock.Advance(12 * time.Hour)
	waitFor(t, 5*time.Second, "background purge", func() bool {
		return countRows(t, pool, schema, "sessions") == 0 && countRows(t, pool, schema, "aux_records") == 0
	})
}

// TestCommitRacingBump races commits of a user's sessions against the
// bump that revokes them. Whichever wins, no session of the old generation
// may be left: a commit that ran first is deleted by the bump, one that ran
// second is refused.
func TestCommitRacingBump(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testservers.Postgres(t))
	schema := freshSchema(t, pool)
	clock := storetest.NewClock(storetest.Start)
	s := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now, PurgeInterval: -1})
	staleRows := `SELECT count(*) FROM ` + pgx.Identifier{schema, "sessions"}.Sanitize() + ` s
		JOIN ` + pgx.Identifier{schema, "user_generations"}.Sanitize() + ` g USING (user_id)
		WHERE s.user_id = $1 AND s.generation < g.generation`
	refused := 0
	for round := range 60 {
		user := fmt.Sprintf("racer-%d", round)
		// Odd rounds race the user's very first session against their
		// very first bump.
		existing := storetest.NewRecord(user, clock.Now())
		if round%2 == 0 {
			if err := s.Commit(ctx, existing); err != nil {
				t.Fatal(err)
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var bumpErr error
		commitErrs := make([]error, 2)
		wg.Go(func() {
			<-start
			_, bumpErr = s.BumpGeneration(ctx, user)
		})
		wg.Go(func() {
			<-start
			commitErrs[0] = s.Commit(ctx, storetest.NewRecord(user, clock.Now()))
		})
		if round%2 == 0 {
			wg.Go(func() {
				<-start
				update := existing
				update.Version = 2
				commitErrs[1] = s.Commit(ctx, update)
			})
		}
		close(start)
		wg.Wait()
		if bumpErr != nil {
			t.Fatal(bumpErr)
		}
		for _, err := range commitErrs {
			switch {
			case errors.Is(err, cloakroom.ErrNotFound):
				refused++
			case err != nil:
				t.Fatalf("commit racing a bump: %v, want nil or ErrNotFound", err)
			}
		}
		var stale int
		if err := pool.QueryRow(ctx, staleRows, user).Scan(&stale); err != nil {
			t.Fatal(err)
		}
		if stale != 0 {
			t.Fatalf("round %d: %d sessions of a revoked generation survived the bump", round, stale)
		}
	}
	t.Logf("%d of the racing commits were refused as revoked", refused)
}

// waitFor polls cond until it holds, failing t after limit, and returns
// how long it took.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: still waiting after %v", what, limit)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return time.Since(start)
}

// nodes opens n stores on one fresh schema, each with a pool of its own as
// separate gateways would have, with cfg's settings and a shared test
// clock. It returns them with the first pool, for direct queries.
func nodes(t *testing.T, n int, cfg pgstore.Config) ([]*pgstore.Store, *pgxpool.Pool, *storetest.Clock) {
	t.Helper()
	url := testservers.Postgres(t)
	first := newPool(t, url)
	cfg.Schema = freshSchema(t, first)
	clock := storetest.NewClock(storetest.Start)
	cfg.Now = clock.Now
	stores := make([]*pgstore.Store, n)
	for i := range stores {
		pool := first
		if i > 0 {
			pool = newPool(t, url)
		}
		stores[i] = newStore(t, pool, cfg)
	}
	return stores, first, clock
}

// warmCache finds key through s until s caches it. A single Find may not:
// a fill is refused when an invalidation of the key, such as the echo of
// the commit that created it, arrives while the query runs.
func warmCache(t testing.TB, s *pgstore.Store, key cloakroom.Key) {
	t.Helper()
	waitFor(t, 5*time.Second, "cache fill", func() bool {
		if _, found, err := s.Find(context.Background(), key); err != nil || !found {
			t.Fatalf("Find = %v, %v; want found", found, err)
		}
		return pgstore.Cached(s, key)
	})
}

// TestCacheInvalidationAcrossNodes runs two caching stores on one schema,
// each with its own pool, as two gateways would, and measures how long a
// write on one takes to evict the other's cached copy.
func TestCacheInvalidationAcrossNodes(t *testing.T) {
	ctx := context.Background()
	stores, _, clock := nodes(t, 2, pgstore.Config{Cache: true})
	a, b := stores[0], stores[1]

	mustFind := func(s *pgstore.Store, rec cloakroom.Record) cloakroom.Record {
		t.Helper()
		got, found, err := s.Find(ctx, rec.Key)
		if err != nil || !found {
			t.Fatalf("Find = %v, %v; want found", found, err)
		}
		return got
	}
	warm := func(recs ...cloakroom.Record) {
		t.Helper()
		for _, rec := range recs {
			warmCache(t, a, rec.Key)
			warmCache(t, b, rec.Key)
		}
	}
	commit := func(s *pgstore.Store, rec cloakroom.Record) {
		t.Helper()
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}

	// Each delay runs from the write's return to the eviction on B; the
	// notification is sent at commit, so it may well be there already.
	// The write's own duration is recorded alongside.
	type sample struct{ write, evict time.Duration }
	measure := func(write func(), evicted func() bool) sample {
		t.Helper()
		start := time.Now()
		write()
		written := time.Since(start)
		return sample{written, waitFor(t, 5*time.Second, "invalidation", evicted)}
	}
	samples := map[string][]sample{}
	const rounds = 20
	for range rounds {
		// Delete on A.
		rec := storetest.NewRecord("alice", clock.Now())
		commit(a, rec)
		warm(rec)
		samples["Delete"] = append(samples["Delete"], measure(func() {
			if err := a.Delete(ctx, rec.Key); err != nil {
				t.Fatal(err)
			}
		}, func() bool { return !pgstore.Cached(b, rec.Key) }))
		if _, found, err := b.Find(ctx, rec.Key); err != nil || found {
			t.Fatalf("B finds a session A deleted: found=%v err=%v", found, err)
		}

		// Update on A: B must then return the new version.
		rec = storetest.NewRecord("alice", clock.Now())
		commit(a, rec)
		warm(rec)
		rec.Version, rec.Data = 2, []byte("updated")
		samples["Commit"] = append(samples["Commit"], measure(func() { commit(a, rec) },
			func() bool { return !pgstore.Cached(b, rec.Key) }))
		if got := mustFind(b, rec); got.Version != 2 || string(got.Data) != "updated" {
			t.Fatalf("B found version %d %q after A's update, want 2 %q", got.Version, got.Data, "updated")
		}

		// Generation bump on A revokes every session of the user on B.
		user := "bob-" + rand.Text()[:8]
		first, second := storetest.NewRecord(user, clock.Now()), storetest.NewRecord(user, clock.Now())
		commit(a, first)
		commit(b, second)
		warm(first, second)
		samples["BumpGeneration"] = append(samples["BumpGeneration"], measure(func() {
			if _, err := a.BumpGeneration(ctx, user); err != nil {
				t.Fatal(err)
			}
		}, func() bool { return !pgstore.Cached(b, first.Key) && !pgstore.Cached(b, second.Key) }))
		for _, rec := range []cloakroom.Record{first, second} {
			if _, found, err := b.Find(ctx, rec.Key); err != nil || found {
				t.Fatalf("B finds a session revoked on A: found=%v err=%v", found, err)
			}
		}
	}
	for _, op := range []string{"Delete", "Commit", "BumpGeneration"} {
		var writes, evicts []time.Duration
		for _, s := range samples[op] {
			writes, evicts = append(writes, s.write), append(evicts, s.evict)
		}
		slices.Sort(writes)
		slices.Sort(evicts)
		t.Logf("%-14s on A (median %v): B evicted after it returned: median %v, max %v (%d rounds)",
			op, writes[len(writes)/2], evicts[len(evicts)/2], evicts[len(evicts)-1], len(evicts))
	}
}

// TestCacheDisabledWhileListenerLost kills the listening connection: the
// cache must be flushed and bypassed at once, then come back.
func TestCacheDisabledWhileListenerLost(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testservers.Postgres(t))
	clock := storetest.NewClock(storetest.Start)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now, Cache: true})
	rec := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	warmCache(t, s, rec.Key)

	pid := pgstore.ListenerPID(s)
	if _, err := pool.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pid)); err != nil {
		t.Fatal(err)
	}
	lost := waitFor(t, 5*time.Second, "listener loss", func() bool { return !pgstore.CacheEnabled(s) })
	t.Logf("listener loss noticed after %v", lost)
	if pgstore.Cached(s, rec.Key) {
		t.Fatal("cache kept an entry after its listener was lost")
	}

	back := waitFor(t, 10*time.Second, "listener reconnect", func() bool { return pgstore.CacheEnabled(s) })
	t.Logf("listener reconnected after %v", back)
	if pgstore.ListenerPID(s) == pid {
		t.Fatal("listener reports the terminated backend")
	}
	warmCache(t, s, rec.Key)
	// The new connection receives invalidations.
	other := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now})
	if err := other.Delete(ctx, rec.Key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "invalidation after reconnect", func() bool { return !pgstore.Cached(s, rec.Key) })
}

func TestFindFailsWithClosedPool(t *testing.T) {
	ctx := context.Background()
	url := testservers.Postgres(t)
	setup := newPool(t, url)
	schema := freshSchema(t, setup)
	pool := newPool(t, url)
	clock := storetest.NewClock(storetest.Start)
	s := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now})
	rec := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	if _, found, err := s.Find(ctx, rec.Key); err == nil || found {
		t.Fatalf("Find on a closed pool = found %v, err %v; want an error and not found", found, err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping on a closed pool succeeded")
	}
	if err := s.Commit(ctx, storetest.NewRecord("alice", clock.Now())); err == nil || errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("Commit on a closed pool = %v, want a plain failure", err)
	}
}

// TestFindFailsWhenServerStops stops the server under a caching store:
// once the listener notices, nothing is served from memory any more.
func TestFindFailsWhenServerStops(t *testing.T) {
	ctx := context.Background()
	srv := testservers.StartPostgres(t)
	pool := newPool(t, srv.URL)
	clock := storetest.NewClock(storetest.Start)
	s := newStore(t, pool, pgstore.Config{Now: clock.Now, Cache: true})
	rec := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	warmCache(t, s, rec.Key)
	srv.Stop()
	lost := waitFor(t, 10*time.Second, "listener loss", func() bool { return !pgstore.CacheEnabled(s) })
	t.Logf("server stop noticed after %v", lost)
	findCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, found, err := s.Find(findCtx, rec.Key); err == nil || found {
		t.Fatalf("Find with the server stopped = found %v, err %v; want an error and not found", found, err)
	}
	if err := s.Ping(findCtx); err == nil {
		t.Fatal("Ping with the server stopped succeeded")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := pgstore.New(ctx, nil, pgstore.Config{}); err == nil {
		t.Fatal("New(nil pool) succeeded")
	}
	pool := newPool(t, testservers.Postgres(t))
	long := strings.Repeat("s", 64)
	if _, err := pgstore.New(ctx, pool, pgstore.Config{Schema: long}); err == nil {
		t.Fatal("New with a 64-byte schema name succeeded")
	}
}

func benchmarkFind(b *testing.B, cached bool) {
	ctx := context.Background()
	pool := newPool(b, testservers.Postgres(b))
	s := newStore(b, pool, pgstore.Config{Schema: freshSchema(b, pool), Cache: cached})
	rec := storetest.NewRecord("alice", time.Now())
	if err := s.Commit(ctx, rec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, found, err := s.Find(ctx, rec.Key); err != nil || !found {
			b.Fatalf("Find = %v, %v", found, err)
		}
	}
}

func BenchmarkFind(b *testing.B)       { benchmarkFind(b, false) }
func BenchmarkFindCached(b *testing.B) { benchmarkFind(b, true) }

// TestStalledListenerServesNothingRevoked stalls B's listener, as a
// starved goroutine or a lagging server would, while B's cache holds a
// session, and revokes the session through A. Once A's call has returned,
// B must refuse the session although its cache still holds it: B's lease
// ran out while A waited for the acknowledgement B never sent.
func TestStalledListenerServesNothingRevoked(t *testing.T) {
	ctx := context.Background()
	// A short lease keeps the test quick: each revocation below waits it out.
	stores, _, clock := nodes(t, 2, pgstore.Config{Cache: true, CacheLease: 200 * time.Millisecond})
	a, b := stores[0], stores[1]

	revocations := []struct {
		name   string
		revoke func(rec cloakroom.Record)
	}{
		{"Delete", func(rec cloakroom.Record) {
			if err := a.Delete(ctx, rec.Key); err != nil {
				t.Fatal(err)
			}
		}},
		{"BumpGeneration", func(rec cloakroom.Record) {
			if _, err := a.BumpGeneration(ctx, rec.UserID); err != nil {
				t.Fatal(err)
			}
		}},
		{"Rotate", func(rec cloakroom.Record) {
			next := storetest.NewRecord(rec.UserID, clock.Now())
			if _, err := a.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, New: next}); err != nil {
				t.Fatal(err)
			}
		}},
		{"RotateBump", func(rec cloakroom.Record) {
			// Revoke-others from another session of the user.
			mine := storetest.NewRecord(rec.UserID, clock.Now())
			if err := a.Commit(ctx, mine); err != nil {
				t.Fatal(err)
			}
			next := storetest.NewRecord(rec.UserID, clock.Now())
			if _, err := a.Rotate(ctx, cloakroom.Rotation{Old: mine.Key, OldMustLive: true, New: next, Bump: true}); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, rv := range revocations {
		t.Run(rv.name, func(t *testing.T) {
			rec := storetest.NewRecord("user-"+rand.Text()[:8], clock.Now())
			if err := a.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			release := stallCaching(t, b, rec.Key)
			defer release()

			rv.revoke(rec)

			if !pgstore.Cached(b, rec.Key) {
				t.Fatal("B's stalled listener dropped the entry: the test did not stall it")
			}
			if _, found, err := b.Find(ctx, rec.Key); err != nil || found {
				t.Fatalf("B's Find after A's %s returned, with B's listener stalled: found=%v err=%v; want not found", rv.name, found, err)
			}
			release()
			// Once running again, B hears the revocation and trusts its
			// cache again.
			waitFor(t, 5*time.Second, "B dropping the entry", func() bool { return !pgstore.Cached(b, rec.Key) })
			waitFor(t, 5*time.Second, "B's lease", func() bool { return pgstore.Trusted(b) })
		})
	}
}

// TestRevocationAcknowledged revokes through A while B and C cache the
// session. With every listener running, A returns on their
// acknowledgements, never by waiting out the (here very long) lease, and
// by then neither B nor C holds the session.
func TestRevocationAcknowledged(t *testing.T) {
	ctx := context.Background()
	stores, _, clock := nodes(t, 3, pgstore.Config{Cache: true, CacheLease: 2 * time.Second})
	a, b, c := stores[0], stores[1], stores[2]
	// A relies on acknowledgements alone once it has listened for a
	// lease: before, a node it has not heard yet may trust its cache.
	waitFor(t, 10*time.Second, "A listening for a lease", func() bool { return pgstore.Settled(a) })
	for round := range 10 {
		user := fmt.Sprintf("user-%d-%s", round, rand.Text()[:6])
		first, second := storetest.NewRecord(user, clock.Now()), storetest.NewRecord(user, clock.Now())
		for _, rec := range []cloakroom.Record{first, second} {
			if err := a.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			warmTrusted(t, b, rec.Key)
			warmTrusted(t, c, rec.Key)
		}
		if err := a.Delete(ctx, first.Key); err != nil {
			t.Fatal(err)
		}
		if pgstore.Cached(b, first.Key) || pgstore.Cached(c, first.Key) {
			t.Fatalf("round %d: Delete on A returned while B or C still cached the session", round)
		}
		if _, err := a.BumpGeneration(ctx, user); err != nil {
			t.Fatal(err)
		}
		if pgstore.Cached(b, second.Key) || pgstore.Cached(c, second.Key) {
			t.Fatalf("round %d: BumpGeneration on A returned while B or C still cached the session", round)
		}
	}
	if n := pgstore.WaitedOut(a); n != 0 {
		t.Fatalf("%d of 20 revocations waited out the lease, with every node acknowledging", n)
	}
	// A node that closes says so: nobody waits for it any more.
	c.Close()
	rec := storetest.NewRecord("carol-"+rand.Text()[:8], clock.Now())
	if err := a.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	warmTrusted(t, b, rec.Key)
	if err := a.Delete(ctx, rec.Key); err != nil {
		t.Fatal(err)
	}
	if pgstore.Cached(b, rec.Key) {
		t.Fatal("Delete on A returned while B still cached the session")
	}
	if n := pgstore.WaitedOut(a); n != 0 {
		t.Fatal("A waited out the lease for a node that had closed")
	}
}

// stallCaching stalls s's listener with every key in its cache, and
// returns the release. The echo of the commit that wrote a key may yet
// drop its entry, and until the listener is parked it may still be
// handling that echo, so the entries are checked only then.
func stallCaching(t testing.TB, s *pgstore.Store, keys ...cloakroom.Key) (release func()) {
	t.Helper()
	for {
		for _, k := range keys {
			warmTrusted(t, s, k)
		}
		parked, release := pgstore.StallListener(s)
		select {
		case <-parked:
		case <-time.After(10 * time.Second):
			t.Fatal("the listener did not stop at a heartbeat (every quarter lease) within 10s")
		}
		cached := true
		for _, k := range keys {
			cached = cached && pgstore.Cached(s, k)
		}
		if cached {
			return release
		}
		release()
	}
}

// warmTrusted finds key through s until s serves it from its cache.
func warmTrusted(t testing.TB, s *pgstore.Store, key cloakroom.Key) {
	t.Helper()
	warmCache(t, s, key)
	waitFor(t, 5*time.Second, "cache lease", func() bool { return pgstore.Trusted(s) })
}

// TestEndsAcrossNodes watches ends on B, a store without cache, while A
// ends sessions: B reports each, and End{All} when its listening
// connection comes back after a loss.
func TestEndsAcrossNodes(t *testing.T) {
	ctx := context.Background()
	stores, poolA, clock := nodes(t, 2, pgstore.Config{})
	a, b := stores[0], stores[1]

	ends := make(chan cloakroom.End, 64)
	watchCtx, stop := context.WithCancel(ctx)
	watching := make(chan error, 1)
	go func() {
		watching <- b.WatchEnds(watchCtx, func(e cloakroom.End) {
			select {
			case ends <- e:
			default:
				t.Error("end notifications overflowed the test's buffer")
			}
		})
	}()
	expect := func(what string, match func(cloakroom.End) bool) {
		t.Helper()
		expectEnd(t, ends, what, match)
	}
	// B reports End{All} once it listens: nothing before can be missed.
	expect("the start of listening", func(e cloakroom.End) bool { return e.All })

	user := "alice-" + rand.Text()[:8]
	rec := storetest.NewRecord(user, clock.Now())
	if err := a.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, rec.Key); err != nil {
		t.Fatal(err)
	}
	expect("Delete", func(e cloakroom.End) bool { return e.Key == rec.Key })

	if _, err := a.BumpGeneration(ctx, user); err != nil {
		t.Fatal(err)
	}
	expect("BumpGeneration", func(e cloakroom.End) bool { return e.UserID == user && e.Generation == 1 })

	old := storetest.NewRecord(user, clock.Now())
	old.Generation = 1
	if err := a.Commit(ctx, old); err != nil {
		t.Fatal(err)
	}
	next := storetest.NewRecord(user, clock.Now())
	next.Generation = 1
	next, err := a.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next, Bump: true})
	if err != nil {
		t.Fatal(err)
	}
	var deleted, bumped bool
	expect("Rotate's delete and bump", func(e cloakroom.End) bool {
		deleted = deleted || e.Key == old.Key
		bumped = bumped || (e.UserID == user && e.Generation == 2)
		return deleted && bumped
	})

	// Writes are not ends.
	next.Version, next.Data = 2, []byte("updated")
	if err := a.Commit(ctx, next); err != nil {
		t.Fatal(err)
	}
	marker := storetest.NewRecord(user, clock.Now())
	marker.Generation = 2
	if err := a.Commit(ctx, marker); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, marker.Key); err != nil {
		t.Fatal(err)
	}
	expect("the marker's Delete", func(e cloakroom.End) bool {
		if e.Key == next.Key {
			t.Errorf("B reported an update of %s as an end", next.Key.Short())
		}
		return e.Key == marker.Key
	})

	// A lost connection: B reports End{All} once it listens again.
	if _, err := poolA.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(pgstore.ListenerPID(b))); err != nil {
		t.Fatal(err)
	}
	expect("the reconnect", func(e cloakroom.End) bool { return e.All })

	stop()
	select {
	case err := <-watching:
		if err != nil {
			t.Fatalf("WatchEnds = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WatchEnds did not return after its context ended")
	}
}
