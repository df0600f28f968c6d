package sqlitestore_test

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/sqlitestore"
	"github.com/cloakroom/cloakroom/storetest"
)

// TestConformanceUncached runs the suite on the store without its cache
// (TestConformance runs it with the cache, the default).
func TestConformanceUncached(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
		return openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{Now: clock.Now, DisableCache: true})
	})
}

// commitNew commits a fresh session of user and returns it.
func commitNew(t *testing.T, s *sqlitestore.Store, user string) cloakroom.Record {
	t.Helper()
	rec := storetest.NewRecord(user, time.Now())
	if err := s.Commit(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

func found(t *testing.T, s *sqlitestore.Store, key cloakroom.Key) bool {
	t.Helper()
	return foundBy(t, s.Find, key)
}

// foundBy reports whether find, a store's Find or FindAux, finds key.
func foundBy[R any](t *testing.T, find func(context.Context, cloakroom.Key) (R, bool, error), key cloakroom.Key) bool {
	t.Helper()
	_, ok, err := find(context.Background(), key)
	if err != nil {
		t.Fatalf("lookup of %s: %v", key.Short(), err)
	}
	return ok
}

// TestCacheKeepsOthersOnOwnWrites checks that the store's own writes drop
// only what they change: the cache stays warm for everyone else.
func TestCacheKeepsOthersOnOwnWrites(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{})
	a, b := commitNew(t, s, "alice"), commitNew(t, s, "bob")
	if !found(t, s, a.Key) || !found(t, s, b.Key) {
		t.Fatal("fresh sessions not found")
	}
	if !sqlitestore.Cached(s, a.Key) || !sqlitestore.Cached(s, b.Key) {
		t.Fatal("Find did not fill the cache")
	}

	a.Version, a.Data = 2, []byte("touched")
	if err := s.Commit(ctx, a); err != nil {
		t.Fatal(err)
	}
	if sqlitestore.Cached(s, a.Key) {
		t.Error("the committed session is still cached")
	}
	if !sqlitestore.Cached(s, b.Key) {
		t.Error("a commit to alice's session flushed bob's")
	}
	if got, ok, err := s.Find(ctx, a.Key); err != nil || !ok || string(got.Data) != "touched" {
		t.Fatalf("Find after commit = %q, %v, %v", got.Data, ok, err)
	}

	if err := s.Delete(ctx, a.Key); err != nil {
		t.Fatal(err)
	}
	if found(t, s, a.Key) {
		t.Fatal("deleted session found")
	}
	if !sqlitestore.Cached(s, b.Key) {
		t.Error("deleting alice's session flushed bob's")
	}

	c := commitNew(t, s, "carol")
	found(t, s, c.Key)
	if _, err := s.BumpGeneration(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if found(t, s, c.Key) {
		t.Fatal("session found after its user's generation was bumped")
	}
	if !sqlitestore.Cached(s, b.Key) {
		t.Error("bumping carol flushed bob's session")
	}
}

// TestCacheSeesOtherConnections checks that writes through other
// connections to the file, a second store or an application's own
// *sql.DB, reach the next Find of a warm store.
func TestCacheSeesOtherConnections(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	warm := openStore(t, path, sqlitestore.Config{})
	other := openStore(t, path, sqlitestore.Config{})
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	deleted, bumped, updated, rawDeleted := commitNew(t, warm, "alice"), commitNew(t, warm, "bob"), commitNew(t, warm, "carol"), commitNew(t, warm, "dave")
	for _, rec := range []cloakroom.Record{deleted, bumped, updated, rawDeleted} {
		found(t, warm, rec.Key)
		if !sqlitestore.Cached(warm, rec.Key) {
			t.Fatal("not cached after Find")
		}
	}

	if err := other.Delete(ctx, deleted.Key); err != nil {
		t.Fatal(err)
	}
	if found(t, warm, deleted.Key) {
		t.Error("session deleted by another store still found")
	}
	if _, err := other.BumpGeneration(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if found(t, warm, bumped.Key) {
		t.Error("session revoked by another store's generation bump still found")
	}
	updated.Version, updated.Data = 2, []byte("from elsewhere")
	if err := other.Commit(ctx, updated); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := warm.Find(ctx, updated.Key); err != nil || !ok || string(got.Data) != "from elsewhere" {
		t.Errorf("Find after another store's update = %q, %v, %v", got.Data, ok, err)
	}
	found(t, warm, rawDeleted.Key)
	if _, err := raw.ExecContext(ctx, "DELETE FROM sessions WHERE key = ?", rawDeleted.Key[:]); err != nil {
		t.Fatal(err)
	}
	if found(t, warm, rawDeleted.Key) {
		t.Error("session deleted through a raw *sql.DB still found")
	}
}

// otherProcessEnv switches the test binary, re-executed by
// TestCacheSeesOtherProcess, into a child that revokes and exits.
const otherProcessEnv = "SQLITESTORE_TEST_REVOKE_CHILD_DB"

// TestCacheSeesOtherProcess revokes sessions from another process, as
// `cloakroom sessions revoke` does, while this one holds them in a warm
// cache: the next Find refuses them.
func TestCacheSeesOtherProcess(t *testing.T) {
	if path := os.Getenv(otherProcessEnv); path != "" {
		runRevokeChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	warm := openStore(t, path, sqlitestore.Config{})
	deleted, bumped, kept := commitNew(t, warm, "alice"), commitNew(t, warm, "bob"), commitNew(t, warm, "carol")
	for _, rec := range []cloakroom.Record{deleted, bumped, kept} {
		found(t, warm, rec.Key)
		found(t, warm, rec.Key)
	}

	runTestChild(t, "TestCacheSeesOtherProcess", otherProcessEnv+"="+path, "REVOKE_KEY="+deleted.Key.String())
	if found(t, warm, deleted.Key) {
		t.Error("session deleted by another process still found")
	}
	if found(t, warm, bumped.Key) {
		t.Error("session revoked by another process's generation bump still found")
	}
	if !found(t, warm, kept.Key) {
		t.Error("a session the other process did not touch is gone")
	}
}

func runRevokeChild(path string) {
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{PurgeInterval: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	defer s.Close()
	var key cloakroom.Key
	if b, err := hex.DecodeString(os.Getenv("REVOKE_KEY")); err != nil || len(b) != len(key) {
		fmt.Fprintln(os.Stderr, "child: bad key")
		os.Exit(2)
	} else {
		copy(key[:], b)
	}
	if err := s.Delete(ctx, key); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	if _, err := s.BumpGeneration(ctx, "bob"); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
}

// TestCacheRevocationRace revokes sessions through another store while
// readers hammer a warm one and the warm one writes too (touches, whose
// commits the cache must tell apart from the other store's). Once a
// revocation has returned, no Find that starts afterwards may find the
// session.
func TestCacheRevocationRace(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	warm := openStore(t, path, sqlitestore.Config{RelaxedDurability: true})
	other := openStore(t, path, sqlitestore.Config{RelaxedDurability: true})

	const sessions = 40
	recs := make([]cloakroom.Record, sessions)
	var revoked [sessions]atomic.Bool
	for i := range recs {
		recs[i] = commitNew(t, warm, fmt.Sprintf("user-%d", i))
	}
	toucher := commitNew(t, warm, "toucher")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var violations, finds atomic.Int64
	for r := 0; r < 3; r++ {
		wg.Go(func() {
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := i % sessions
				wasRevoked := revoked[k].Load()
				_, ok, err := warm.Find(ctx, recs[k].Key)
				finds.Add(1)
				if err != nil {
					t.Errorf("Find: %v", err)
					return
				}
				if ok && wasRevoked {
					violations.Add(1)
				}
			}
		})
	}
	wg.Go(func() { // the warm store's own writes
		rec := toucher
		for {
			select {
			case <-stop:
				return
			default:
			}
			rec.Version++
			if err := warm.Commit(ctx, rec); err != nil {
				t.Errorf("touch: %v", err)
				return
			}
		}
	})
	for i := range recs {
		var err error
		if i%2 == 0 {
			err = other.Delete(ctx, recs[i].Key)
		} else {
			_, err = other.BumpGeneration(ctx, recs[i].UserID)
		}
		if err != nil {
			t.Fatal(err)
		}
		revoked[i].Store(true)
		if found(t, warm, recs[i].Key) {
			t.Errorf("session %d found right after another store revoked it", i)
		}
	}
	close(stop)
	wg.Wait()
	if n := violations.Load(); n > 0 {
		t.Errorf("%d Finds that started after a revocation returned found the session", n)
	}
	t.Logf("%d concurrent Finds", finds.Load())
}

// TestCacheOtherCommitRightAfterOwn puts another store's revocation in the
// narrowest window: after this store's COMMIT and before it accounts for
// its own write. The cache must not take the other write for its own.
func TestCacheOtherCommitRightAfterOwn(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	warm := openStore(t, path, sqlitestore.Config{})
	other := openStore(t, path, sqlitestore.Config{})
	victim, touched := commitNew(t, warm, "alice"), commitNew(t, warm, "bob")
	found(t, warm, victim.Key)

	var hookErr error
	sqlitestore.SetAfterCommitHook(warm, func() {
		sqlitestore.SetAfterCommitHook(warm, nil)
		hookErr = other.Delete(ctx, victim.Key)
	})
	touched.Version++
	if err := warm.Commit(ctx, touched); err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if found(t, warm, victim.Key) {
		t.Fatal("session deleted by another store right after our commit is still found")
	}
}

// TestEndsFromOtherProcesses checks the store's notifications: its own
// deletes are reported by key, and a commit by anyone else to the file,
// which cannot say what it ended, as one End{All: true}.
func TestEndsFromOtherProcesses(t *testing.T) {
	t.Run("cached", func(t *testing.T) { testEndsFromOtherProcesses(t, sqlitestore.Config{}) })
	t.Run("uncached", func(t *testing.T) { testEndsFromOtherProcesses(t, sqlitestore.Config{DisableCache: true}) })
}

func testEndsFromOtherProcesses(t *testing.T, cfg sqlitestore.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	path := filepath.Join(t.TempDir(), "sessions.db")
	watched := openStore(t, path, cfg)
	other := openStore(t, path, sqlitestore.Config{})
	ends := make(chan cloakroom.End, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watched.WatchEnds(ctx, func(e cloakroom.End) { ends <- e })
	}()
	defer func() { cancel(); <-done }()

	// next waits for an end matching want, and counts the All ends seen
	// on the way.
	alls := 0
	next := func(what string, want func(cloakroom.End) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case e := <-ends:
				if e.All {
					alls++
				}
				if want(e) {
					return
				}
			case <-deadline:
				t.Fatalf("no notification of %s", what)
			}
		}
	}
	// WatchEnds registers asynchronously, and says End{All: true} once it
	// has.
	next("the subscription's start", func(e cloakroom.End) bool { return e.All })
	alls = 0

	for i := 0; i < 20; i++ {
		rec := commitNew(t, watched, "alice")
		if err := watched.Delete(ctx, rec.Key); err != nil {
			t.Fatal(err)
		}
		next("own delete", func(e cloakroom.End) bool { return e.Key == rec.Key })
	}
	if alls != 0 {
		t.Fatalf("%d End{All} notifications for this store's own writes, want 0", alls)
	}

	victim := commitNew(t, watched, "bob")
	if err := other.Delete(ctx, victim.Key); err != nil {
		t.Fatal(err)
	}
	next("another process's write", func(e cloakroom.End) bool { return e.All })
	own := commitNew(t, watched, "carol")
	if err := watched.Delete(ctx, own.Key); err != nil {
		t.Fatal(err)
	}
	next("own delete after", func(e cloakroom.End) bool { return e.Key == own.Key })
	if alls != 1 {
		t.Fatalf("%d End{All} notifications for one commit of another store, want 1", alls)
	}
}

// TestCloseEndsWatchers: Close ends every WatchEnds call before it
// releases the file, so no watcher polls a closed store.
func TestCloseEndsWatchers(t *testing.T) {
	s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan error, 1)
	go func() { returned <- s.WatchEnds(context.Background(), func(cloakroom.End) {}) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-returned:
		if err == nil {
			t.Error("WatchEnds on a closed store returned no error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("WatchEnds still running after Close")
	}
	if err := s.WatchEnds(context.Background(), func(cloakroom.End) {}); err == nil {
		t.Error("WatchEnds after Close returned no error")
	}
}
