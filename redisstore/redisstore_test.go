package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/storetest"
	"github.com/redis/rueidis"
)

// invalidationBudget is how long another client may keep answering an
// updated value from its cache after the write returned. Delivery on
// loopback takes microseconds and the tests log the delays they saw; the
// budget only catches an invalidation that never arrives, so a busy CI
// machine cannot fail it. Revocations are not async: a revoking call
// returns only once every node dropped the session, which
// TestStalledNodeDoesNotAccept and the multi-node tests hold to zero.
const invalidationBudget = 2 * time.Second

func newTestClient(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		t.Fatalf("rueidis.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(client.Close)
	return client
}

// twoNodes returns two Stores sharing a fresh prefix, each on a client of
// its own, as two gateways are; the first one's client; and the prefix.
func twoNodes(t *testing.T) (a, b *Store, client rueidis.Client, prefix string) {
	t.Helper()
	addr, prefix := testservers.RedisFresh(t)
	client = newTestClient(t, addr)
	a = newTestStore(t, client, Config{Prefix: prefix})
	b = newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	return a, b, client, prefix
}

func newTestStore(t testing.TB, client rueidis.Client, cfg Config) *Store {
	t.Helper()
	s, err := New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.cacheTTL > 0 {
		awaitLease(t, s)
	}
	return s
}

// warmCache has s find rec until s answers it from its cache and
// remembers it: on a loaded machine the lease can lapse for a moment, and
// a Find then asks Redis instead.
func warmCache(t testing.TB, s *Store, rec cloakroom.Record) {
	t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		awaitLease(t, s)
		for j := 0; j < 2; j++ {
			got, found, err := s.Find(ctx, rec.Key)
			if err != nil || !found || got.Version != rec.Version || got.Handle != rec.Handle {
				t.Fatalf("Find = %q version %d, %v, %v; want %q version %d", got.Handle, got.Version, found, err, rec.Handle, rec.Version)
			}
		}
		if e := s.found.get(rec.Key); e != nil && e.userID == rec.UserID && s.cacheHit(ctx, rec.Key, rec.UserID) {
			return
		}
		if i == 100 {
			t.Fatal("the store does not answer from its cache")
		}
	}
}

// awaitLease waits until s trusts its cache: its first heartbeat round
// has come back.
func awaitLease(t testing.TB, s *Store) {
	t.Helper()
	for i := 0; !s.lease.valid(s.recent.now()); i++ {
		if i == 10000 {
			t.Fatal("the store's cache lease did not start within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConformance(t *testing.T) {
	addr := testservers.Redis(t)
	for _, mode := range []struct {
		name     string
		cacheTTL time.Duration
	}{
		{"Cached", 0},
		{"Uncached", -1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			client := newTestClient(t, addr)
			storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
				return newTestStore(t, client, Config{
					Prefix:   testservers.RedisPrefix(t, addr),
					Now:      clock.Now,
					CacheTTL: mode.cacheTTL,
				})
			})
		})
	}
}

// TestConformanceCluster runs the store suite on a six-node Redis Cluster,
// where every script must keep to one slot.
func TestConformanceCluster(t *testing.T) {
	seeds := testservers.RedisCluster(t)
	for _, mode := range []struct {
		name     string
		cacheTTL time.Duration
	}{
		{"Cached", 0},
		{"Uncached", -1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: seeds})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.Close)
			if _, ok := client.Nodes()[seeds[0]]; !ok || len(client.Nodes()) < 3 {
				t.Fatalf("the client does not see a cluster: %d nodes", len(client.Nodes()))
			}
			storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
				return newTestStore(t, client, Config{
					Prefix:   testservers.RedisPrefix(t, seeds[0]),
					Now:      clock.Now,
					CacheTTL: mode.cacheTTL,
				})
			})
		})
	}
}

func TestNewRejectsBracedPrefix(t *testing.T) {
	for _, prefix := range []string{"app{", "app}", "{app}:"} {
		if _, err := New(nil, Config{Prefix: prefix}); err == nil {
			t.Errorf("New with prefix %q succeeded", prefix)
		}
	}
}

// hashTag returns the part of key Redis Cluster hashes, per the cluster
// specification: the text between the first '{' and the next '}', if that
// is not empty, else the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

// TestUserKeysShareSlot checks that the keys one script touches share a
// hash tag, whatever the user ID holds, and that distinct users and
// sessions get distinct tags.
func TestUserKeysShareSlot(t *testing.T) {
	s := &Store{prefix: DefaultPrefix}
	key := cloakroom.Key{1, 2, 3}
	for _, user := range []string{"alice", "a}b", "{x}", "}", "{", "user:42"} {
		tag := hashTag(s.generationKey(user))
		if k := s.sessionsKey(user); hashTag(k) != tag {
			t.Errorf("user %q: key %q has tag %q, generation key has %q", user, k, hashTag(k), tag)
		}
		if tag == "" || tag == s.generationKey(user) {
			t.Errorf("user %q: generation key %q has no hash tag", user, s.generationKey(user))
		}
	}
	if hashTag(s.generationKey("alice")) == hashTag(s.generationKey("bob")) {
		t.Error("two users share a hash tag")
	}
	if got, want := hashTag(s.pointerKey(key)), string(key[:]); got != want {
		t.Errorf("pointer key tag = %q, want the raw key %q", got, want)
	}
}

func TestOwnerCannotChange(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	s := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})

	anon := newSession(t, s, "")
	if err := s.Commit(ctx, anon); err != nil {
		t.Fatal(err)
	}
	promoted := anon
	promoted.UserID, promoted.Version = "bob", 2
	err := s.Commit(ctx, promoted)
	if err == nil || errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("promoting an anonymous session in place: err = %v, want an owner error", err)
	}
	if got, found, err := s.Find(ctx, anon.Key); err != nil || !found || got.UserID != "" {
		t.Fatalf("after refused promotion Find = %q, %v, %v; want the anonymous session", got.UserID, found, err)
	}
	if err := s.Commit(ctx, storetest.NewRecord("", time.Now())); err != nil {
		t.Fatal(err)
	}

	user := storetest.NewRecord("carol", time.Now())
	if err := s.Commit(ctx, user); err != nil {
		t.Fatal(err)
	}
	demoted := user
	demoted.UserID, demoted.Version = "", 2
	if err := s.Commit(ctx, demoted); err == nil || errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("turning a user's session anonymous: err = %v, want an owner error", err)
	}
	taken := user
	taken.UserID = "mallory"
	if err := s.Commit(ctx, taken); !errors.Is(err, cloakroom.ErrConflict) {
		t.Fatalf("creating another user's session under a live key: err = %v, want ErrConflict", err)
	}
	if list, err := s.List(ctx, "mallory"); err != nil || len(list) != 0 {
		t.Fatalf("List(mallory) = %d, %v after refused create; want none", len(list), err)
	}
}

// TestRecreateAfterExpiry covers reuse of a key whose session expired by
// the store's clock while Redis still holds it.
func TestRecreateAfterExpiry(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	s := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix, Now: clock.Now})
	for _, user := range []string{"dave", ""} {
		rec := storetest.NewRecord(user, clock.Now())
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		clock.Advance(rec.IdleTimeout)
		rec.LastSeen = clock.Now()
		rec.Data = []byte("again")
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatalf("user %q: create over an expired session: %v", user, err)
		}
		if got, found, err := s.Find(ctx, rec.Key); err != nil || !found || string(got.Data) != "again" {
			t.Fatalf("user %q: Find = %q, %v, %v", user, got.Data, found, err)
		}
	}
}

// TestKeysAndTTLs checks what a session leaves in Redis and that Delete and
// BumpGeneration clean it all up, generation counter excepted.
func TestKeysAndTTLs(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	client := newTestClient(t, addr)
	s := newTestStore(t, client, Config{Prefix: prefix})
	pttl := func(key string) time.Duration {
		t.Helper()
		ms, err := client.Do(ctx, client.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if ms < 0 {
			return time.Duration(ms) // -1: no TTL, -2: no key
		}
		return time.Duration(ms) * time.Millisecond
	}
	hasField := func(key cloakroom.Key, user string) bool {
		t.Helper()
		n, err := client.Do(ctx, client.B().Hexists().Key(s.sessionsKey(user)).Field(field(key)).Build()).AsBool()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const gone, forever = -2, -1

	a := storetest.NewRecord("erin", time.Now())
	b := storetest.NewRecord("erin", time.Now())
	for _, rec := range []cloakroom.Record{a, b} {
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	sessions, pointer := pttl(s.sessionsKey("erin")), pttl(s.pointerKey(a.Key))
	if want := a.IdleTimeout + ttlMargin; sessions > want || sessions < want-5*time.Second {
		t.Errorf("session hash TTL = %v, want about %v", sessions, want)
	}
	if want := time.Until(a.AbsoluteDeadline) + ttlMargin; pointer > want+time.Second || pointer < want-5*time.Second {
		t.Errorf("pointer TTL = %v, want about %v (the absolute deadline)", pointer, want)
	}
	if !hasField(a.Key, "erin") || !hasField(b.Key, "erin") {
		t.Fatal("the sessions are not fields of the user's hash")
	}

	if err := s.Delete(ctx, a.Key); err != nil {
		t.Fatal(err)
	}
	if hasField(a.Key, "erin") {
		t.Error("after Delete, the session is still in the user's hash")
	}
	if got := pttl(s.pointerKey(a.Key)); got != gone {
		t.Errorf("after Delete, the pointer still exists (PTTL %v)", got)
	}
	if _, err := s.BumpGeneration(ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{s.sessionsKey("erin"), s.pointerKey(b.Key)} {
		if got := pttl(k); got != gone {
			t.Errorf("after BumpGeneration, %q still exists (PTTL %v)", k, got)
		}
	}
	if got := pttl(s.generationKey("erin")); got != forever {
		t.Errorf("generation key PTTL = %v, want no TTL", got)
	}
	if _, err := s.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pttl(s.epochKey()); got != forever {
		t.Errorf("epoch key PTTL = %v, want no TTL", got)
	}

	anon := newSession(t, s, "")
	if err := s.Commit(ctx, anon); err != nil {
		t.Fatal(err)
	}
	if got, want := pttl(s.pointerKey(anon.Key)), anon.IdleTimeout+ttlMargin; got > want || got < want-5*time.Second {
		t.Errorf("anonymous session TTL = %v, want about %v", got, want)
	}
	if err := s.Delete(ctx, anon.Key); err != nil {
		t.Fatal(err)
	}
	if got := pttl(s.pointerKey(anon.Key)); got != gone {
		t.Errorf("after Delete, anonymous session still exists (PTTL %v)", got)
	}
}

// cacheHit reports whether every read Find makes for key would be answered
// from s's client-side cache. It peeks with the same commands Find uses,
// which fetches what is missing.
func (s *Store) cacheHit(ctx context.Context, key cloakroom.Key, userID string) bool {
	if userID == "" {
		return s.client.DoCache(ctx, s.client.B().Get().Key(s.pointerKey(key)).Cache(), s.cacheTTL).IsCacheHit()
	}
	session := s.client.DoCache(ctx, s.client.B().Hget().Key(s.sessionsKey(userID)).Field(field(key)).Cache(), s.cacheTTL)
	generation := s.client.DoCache(ctx, s.client.B().Get().Key(s.generationKey(userID)).Cache(), s.cacheTTL)
	return session.IsCacheHit() && generation.IsCacheHit()
}

// TestInvalidationAcrossClients runs two "nodes", each with its own rueidis
// client: node B caches a session, node A changes it, and B must stop
// answering the old state within invalidationBudget. It logs how long the
// invalidation took to reach B.
func TestInvalidationAcrossClients(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	nodeA := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	nodeB := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})

	// warm makes B cache the session and checks that it now answers from
	// the cache.
	warm := func(t *testing.T, rec cloakroom.Record) {
		t.Helper()
		warmCache(t, nodeB, rec)
	}
	// await polls node B until done reports true. It returns when, after
	// the write returned, the first Find began that saw the new state (the
	// invalidation had arrived by then), and how many Finds before it
	// still answered the old state from the cache.
	await := func(t *testing.T, what string, done func(cloakroom.Record, bool) bool, key cloakroom.Key) (time.Duration, int) {
		t.Helper()
		start := time.Now()
		for stale := 0; ; stale++ {
			began := time.Since(start)
			got, found, err := nodeB.Find(ctx, key)
			if err != nil {
				t.Fatalf("node B Find: %v", err)
			}
			if done(got, found) {
				return began, stale
			}
			if began > invalidationBudget {
				t.Fatalf("node B still sees the old session %v after %s returned", began, what)
			}
			// Block briefly rather than spin: a spinning goroutine keeps
			// its processor from polling the network, which delays B's
			// connection readers, and with them the invalidation, by up
			// to the runtime's 10ms network poll on a busy machine.
			time.Sleep(20 * time.Microsecond)
		}
	}
	gone := func(_ cloakroom.Record, found bool) bool { return !found }

	const rounds = 30
	var delays []time.Duration
	var staleReads int
	record := func(d time.Duration, stale int) {
		delays = append(delays, d)
		staleReads += stale
	}
	for i := 0; i < rounds; i++ {
		user := ""
		if i%2 == 0 {
			user = fmt.Sprintf("frank-%d", i)
		}
		rec := storetest.NewRecord(user, time.Now())
		if err := nodeA.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		warm(t, rec)
		if err := nodeA.Delete(ctx, rec.Key); err != nil {
			t.Fatal(err)
		}
		record(await(t, "Delete on node A", gone, rec.Key))
	}
	logDelays(t, "Delete", delays, staleReads)

	delays, staleReads = delays[:0], 0
	for i := 0; i < rounds; i++ {
		user := fmt.Sprintf("grace-%d", i)
		a, b := storetest.NewRecord(user, time.Now()), storetest.NewRecord(user, time.Now())
		for _, rec := range []cloakroom.Record{a, b} {
			if err := nodeA.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			warm(t, rec)
		}
		if _, err := nodeA.BumpGeneration(ctx, user); err != nil {
			t.Fatal(err)
		}
		record(await(t, "BumpGeneration on node A", gone, a.Key))
		if _, found, err := nodeB.Find(ctx, b.Key); err != nil || found {
			t.Fatalf("node B still finds the second revoked session: %v, %v", found, err)
		}
	}
	logDelays(t, "BumpGeneration", delays, staleReads)

	delays, staleReads = delays[:0], 0
	for i := 0; i < rounds; i++ {
		rec := storetest.NewRecord(fmt.Sprintf("heidi-%d", i), time.Now())
		if err := nodeA.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		warm(t, rec)
		rec.Version, rec.Data = 2, []byte("second")
		if err := nodeA.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		updated := func(got cloakroom.Record, found bool) bool { return found && got.Version == 2 }
		record(await(t, "Commit on node A", updated, rec.Key))
	}
	logDelays(t, "Commit", delays, staleReads)
}

func logDelays(t *testing.T, what string, delays []time.Duration, staleReads int) {
	t.Helper()
	sorted := slices.Clone(delays)
	slices.Sort(sorted)
	t.Logf("%s on node A: node B saw it at most %v (median), %v (max) after the write returned; %d stale reads in %d rounds",
		what, sorted[len(sorted)/2], sorted[len(sorted)-1], staleReads, len(sorted))
}

// awaitFind polls s until check accepts what Find answers, failing the
// test when that takes longer than invalidationBudget.
func awaitFind(t *testing.T, s *Store, key cloakroom.Key, what string, check func(cloakroom.Record, bool) bool) {
	t.Helper()
	start := time.Now()
	for {
		got, found, err := s.Find(context.Background(), key)
		if err != nil {
			t.Fatalf("%s: Find: %v", what, err)
		}
		if check(got, found) {
			return
		}
		if time.Since(start) > invalidationBudget {
			t.Fatalf("%s: Find still answers %q (found %v, version %d) after %v", what, got.UserID, found, got.Version, invalidationBudget)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// TestRememberedSessionFollowsKey reuses one key for sessions of different
// owners, which only a reused token can do, and checks that a node that
// remembered the previous owner finds the new session and never the old.
func TestRememberedSessionFollowsKey(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	writer := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	reader := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	key := storetest.NewRecord("", time.Now()).Key
	for i, owner := range []string{"", "olga", "olga", "pat", "", "quinn"} {
		rec := storetest.NewRecord(owner, time.Now())
		rec.Key = key
		rec.Data = []byte(fmt.Sprintf("round %d", i))
		if err := writer.Commit(ctx, rec); err != nil {
			t.Fatalf("round %d: Commit for %q: %v", i, owner, err)
		}
		what := fmt.Sprintf("round %d (owner %q)", i, owner)
		awaitFind(t, reader, key, what, func(got cloakroom.Record, found bool) bool {
			return found && got.UserID == owner && string(got.Data) == string(rec.Data)
		})
		// Found again through what the reader remembered.
		warmCache(t, reader, rec)
		if err := writer.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		awaitFind(t, reader, key, what+" after Delete", func(_ cloakroom.Record, found bool) bool { return !found })
	}
}

// TestOwnWriteThenOtherNode checks the read-your-writes memory: a node
// that wrote a session accepts a cached answer only if it shows that
// write, so a later write by another node is still seen.
func TestOwnWriteThenOtherNode(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	nodeA := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	nodeB := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	for _, user := range []string{"rita", ""} {
		rec := storetest.NewRecord(user, time.Now())
		for v := uint64(1); v <= 4; v++ {
			rec.Version = v
			writer := nodeA
			if v%2 == 0 {
				writer = nodeB
			}
			if err := writer.Commit(ctx, rec); err != nil {
				t.Fatalf("user %q: Commit v%d: %v", user, v, err)
			}
			// The writer sees its write at once, the other node within
			// the invalidation budget.
			if got, found, err := writer.Find(ctx, rec.Key); err != nil || !found || got.Version != v {
				t.Fatalf("user %q: the writer's own Find after v%d = v%d, %v, %v", user, v, got.Version, found, err)
			}
			for _, reader := range []*Store{nodeA, nodeB} {
				awaitFind(t, reader, rec.Key, fmt.Sprintf("user %q v%d", user, v), func(got cloakroom.Record, found bool) bool {
					return found && got.Version == v
				})
			}
		}
		// The other node bumps: the first node's memory of its own write
		// must not resurrect the session.
		if user != "" {
			if _, err := nodeA.BumpGeneration(ctx, user); err != nil {
				t.Fatal(err)
			}
			if _, found, err := nodeA.Find(ctx, rec.Key); err != nil || found {
				t.Fatalf("Find on the bumping node: %v, %v; want not found", found, err)
			}
			awaitFind(t, nodeB, rec.Key, "after the bump", func(_ cloakroom.Record, found bool) bool { return !found })
		}
	}
}

// TestBumpRaisesCachedGeneration checks that a Store that bumped a user
// rejects that user's older sessions at once, whatever its cache holds.
func TestBumpRaisesCachedGeneration(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	s := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	old := storetest.NewRecord("sam", time.Now())
	if err := s.Commit(ctx, old); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // cached and remembered
		if _, found, err := s.Find(ctx, old.Key); err != nil || !found {
			t.Fatalf("Find before the bump: %v, %v", found, err)
		}
	}
	gen, err := s.BumpGeneration(ctx, "sam")
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := s.recent.user("sam", s.recent.now()); !ok || !m.known || m.generation != gen {
		t.Fatalf("after BumpGeneration the store remembers %+v, %v; want generation %d", m, ok, gen)
	}
	fresh := storetest.NewRecord("sam", time.Now())
	fresh.Generation = gen
	if err := s.Commit(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, found, err := s.Find(ctx, old.Key); err != nil || found {
			t.Fatalf("revoked session: found=%v err=%v", found, err)
		}
		if _, found, err := s.Find(ctx, fresh.Key); err != nil || !found {
			t.Fatalf("session of the new generation: found=%v err=%v", found, err)
		}
	}
}

// TestGenerationAloneRevokes raises a user's generation behind the store's
// back, as a restored backup or a manual INCR would, so no session is
// deleted: the generation check alone must then reject the session, on a
// node that had it cached within the invalidation budget.
func TestGenerationAloneRevokes(t *testing.T) {
	ctx := context.Background()
	writer, reader, client, _ := twoNodes(t)
	rec := storetest.NewRecord("uma", time.Now())
	if err := writer.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	warmCache(t, reader, rec)
	if err := client.Do(ctx, client.B().Incr().Key(writer.generationKey("uma")).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	awaitFind(t, writer, rec.Key, "writer after the bump", func(_ cloakroom.Record, found bool) bool { return !found })
	awaitFind(t, reader, rec.Key, "reader after the bump", func(_ cloakroom.Record, found bool) bool { return !found })
	if list, err := writer.List(ctx, "uma"); err != nil || len(list) != 0 {
		t.Fatalf("List after the bump = %d sessions, %v; want none", len(list), err)
	}
}

func TestFoundSessionsBudget(t *testing.T) {
	f := newFoundSessions()
	blob := strings.Repeat("x", 4000)
	var last cloakroom.Key
	for i := 0; i < 5000; i++ {
		key := cloakroom.Key{byte(i), byte(i >> 8), 7}
		f.put(key, &foundSession{blob: blob})
		last = key
	}
	total := 0
	for i := range f.shard {
		sh := &f.shard[i]
		sum := 0
		for _, e := range sh.entries {
			sum += e.size()
		}
		if sum != sh.bytes || sh.bytes > rememberedShardBudget {
			t.Errorf("shard %d: %d bytes counted, %d held, budget %d", i, sh.bytes, sum, rememberedShardBudget)
		}
		total += len(sh.entries)
	}
	if total == 0 || total == 5000 {
		t.Errorf("%d of 5000 entries kept; want some, bounded by the budget", total)
	}
	if f.get(last) == nil {
		t.Error("the entry just stored was evicted")
	}
	big := cloakroom.Key{1, 2, 3}
	f.put(big, &foundSession{blob: strings.Repeat("x", maxRememberedRecord+1)})
	if f.get(big) != nil {
		t.Error("a record over maxRememberedRecord was remembered")
	}
}

// TestFindFailsWhenServerStops checks that a dead server makes Find fail
// rather than answer from a cache nobody can invalidate any more.
func TestFindFailsWhenServerStops(t *testing.T) {
	for _, mode := range []struct {
		name     string
		cacheTTL time.Duration
	}{
		{"Cached", 0},
		{"Uncached", -1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv := testservers.StartRedis(t)
			client := newTestClient(t, srv.Addr)
			ctx := context.Background()
			writer := newTestStore(t, client, Config{})
			reader := newTestStore(t, client, Config{CacheTTL: mode.cacheTTL}) // no recent writes of its own
			rec := storetest.NewRecord("ivan", time.Now())
			if err := writer.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ {
				if _, found, err := reader.Find(ctx, rec.Key); err != nil || !found {
					t.Fatalf("Find before stop: %v, %v", found, err)
				}
			}

			srv.Stop()
			stopped := time.Now()
			for answered := 0; ; answered++ {
				fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				began := time.Since(stopped)
				_, found, err := reader.Find(fctx, rec.Key)
				cancel()
				if err != nil {
					if found {
						t.Fatalf("Find failed with %v but reported found", err)
					}
					t.Logf("Find answered %d times after the server stopped; the call begun %v after the stop failed after %v: %v",
						answered, began, time.Since(stopped)-began, err)
					return
				}
				if began > 3*time.Second {
					t.Fatalf("Find still succeeds (found=%v) 3s after the server stopped", found)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func BenchmarkFindCached(b *testing.B) { benchmarkFind(b, 0) }

// BenchmarkFindOwnWrite checks a session the same Store has just written,
// as the requests right after a login do: the store's memory of its write
// must not keep Find from the cache.
func BenchmarkFindOwnWrite(b *testing.B) {
	addr, prefix := testservers.RedisFresh(b)
	s := newTestStore(b, newTestClient(b, addr), Config{Prefix: prefix})
	ctx := context.Background()
	rec := storetest.NewRecord("judy", time.Now())
	if err := s.Commit(ctx, rec); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, found, err := s.Find(ctx, rec.Key); err != nil || !found {
			b.Fatalf("Find: %v, %v", found, err)
		}
	}
}
func BenchmarkFindUncached(b *testing.B) { benchmarkFind(b, -1) }

func benchmarkFind(b *testing.B, cacheTTL time.Duration) {
	addr, prefix := testservers.RedisFresh(b)
	client := newTestClient(b, addr)
	ctx := context.Background()
	writer := newTestStore(b, client, Config{Prefix: prefix})
	for _, user := range []string{"judy", ""} {
		name := "User"
		if user == "" {
			name = "Anonymous"
		}
		b.Run(name, func(b *testing.B) {
			// A store of its own, so the writer's recent writes do not
			// route its reads around the cache.
			reader := newTestStore(b, client, Config{Prefix: prefix, CacheTTL: cacheTTL})
			rec := storetest.NewRecord(user, time.Now())
			if err := writer.Commit(ctx, rec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, found, err := reader.Find(ctx, rec.Key); err != nil || !found {
					b.Fatalf("Find: %v, %v", found, err)
				}
			}
		})
	}
}
