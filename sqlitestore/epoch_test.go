package sqlitestore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/sqlitestore"
	"github.com/cloakroom/cloakroom/storetest"
)

// runTestChild runs the test binary's test named test in a child process
// with env added, and fails t if the child fails.
func runTestChild(t *testing.T, test string, env ...string) {
	t.Helper()
	if runtime.GOOS == "js" || runtime.GOOS == "wasip1" || runtime.GOOS == "ios" {
		t.Skipf("cannot start a child process on %s", runtime.GOOS)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
}

// watchEnds subscribes to s's ends until the test ends, and returns them
// once the subscription is live (its first End{All: true} is consumed).
func watchEnds(t *testing.T, s *sqlitestore.Store) <-chan cloakroom.End {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ends := make(chan cloakroom.End, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchEnds(ctx, func(e cloakroom.End) {
			select {
			case ends <- e:
			default: // the test reads only what it waits for
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	waitEnd(t, ends, "the subscription's start", func(e cloakroom.End) bool { return e.All })
	return ends
}

// waitEnd waits for an end that matches want.
func waitEnd(t *testing.T, ends <-chan cloakroom.End, what string, want func(cloakroom.End) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-ends:
			if want(e) {
				return
			}
		case <-deadline:
			t.Fatalf("no notification of %s", what)
		}
	}
}

// newAux returns a record of the test's, to create.
func newAux(id string, endsWithSessions bool, epoch uint64) cloakroom.AuxRecord {
	return cloakroom.AuxRecord{
		Key: cloakroom.AuxKey("sqlitestore-test", "kind", id), Version: 1,
		Expires: time.Now().Add(time.Hour), EndsWithSessions: endsWithSessions, Epoch: epoch,
		Data: []byte(id),
	}
}

func auxFound(t *testing.T, s *sqlitestore.Store, key cloakroom.Key) bool {
	t.Helper()
	return foundBy(t, s.FindAux, key)
}

// TestEpochBumpEndsSessionsOnEveryNode: three stores on one file, as three
// gateways are. Sessions of several users and anonymous ones, cached by B
// and C, are ended by a global revocation through A while B and C look
// them up back to back and C writes too (its own writes leave its cache
// warm). No lookup that starts after BumpEpoch returned may find one. B
// has a WatchEnds running; C has none, so nothing but its own check of the
// file tells it of A's write.
func TestEpochBumpEndsSessionsOnEveryNode(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	cfg := sqlitestore.Config{RelaxedDurability: true}
	a, b, c := openStore(t, path, cfg), openStore(t, path, cfg), openStore(t, path, cfg)
	watchEnds(t, b)
	nodes := []*sqlitestore.Store{b, c}

	toucher := newAux("toucher", false, 0)
	if err := c.CommitAux(ctx, toucher); err != nil {
		t.Fatal(err)
	}
	const rounds = 10
	var accepted, afterBump atomic.Int64
	for round := range rounds {
		epoch, err := a.Epoch(ctx)
		if err != nil || epoch != uint64(round) {
			t.Fatalf("round %d: Epoch = %d, %v", round, epoch, err)
		}
		var recs []cloakroom.Record
		for _, user := range []string{"alice", "bob", "", ""} {
			rec := storetest.NewRecord(user, time.Now())
			rec.Epoch = epoch
			if err := c.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rec)
		}
		tokens, tombstone := newAux(fmt.Sprint("tokens", round), true, epoch), newAux(fmt.Sprint("tombstone", round), false, 0)
		for _, rec := range []cloakroom.AuxRecord{tokens, tombstone} {
			if err := a.CommitAux(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		for _, node := range nodes {
			for _, rec := range recs {
				// The first lookup after another store's write drops the
				// cache; the second fills it.
				found(t, node, rec.Key)
				if !found(t, node, rec.Key) || !sqlitestore.Cached(node, rec.Key) {
					t.Fatalf("round %d: session not found and cached before the bump", round)
				}
			}
		}

		var returned atomic.Bool
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, node := range nodes {
			for r := range 2 {
				wg.Go(func() {
					for i := r; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						after := returned.Load()
						_, ok, err := node.Find(ctx, recs[i%len(recs)].Key)
						if err != nil {
							t.Errorf("Find: %v", err)
							return
						}
						if after {
							afterBump.Add(1)
							if ok {
								accepted.Add(1)
							}
						}
					}
				})
			}
		}
		wg.Go(func() { // C's own writes, which its cache must tell from A's
			for {
				select {
				case <-stop:
					return
				default:
				}
				toucher.Version++
				if err := c.CommitAux(ctx, toucher); err != nil {
					t.Errorf("touch: %v", err)
					return
				}
			}
		})
		got, err := a.BumpEpoch(ctx)
		returned.Store(true)
		if err != nil || got != epoch+1 {
			t.Fatalf("BumpEpoch = %d, %v; want %d", got, err, epoch+1)
		}
		for _, node := range nodes {
			for _, rec := range recs {
				if found(t, node, rec.Key) {
					t.Errorf("round %d: session found right after the epoch bump returned", round)
				}
			}
			if auxFound(t, node, tokens.Key) {
				t.Errorf("round %d: a record that ends with the sessions outlived the bump", round)
			}
			if !auxFound(t, node, tombstone.Key) {
				t.Errorf("round %d: a record that does not end with the sessions was ended", round)
			}
		}
		close(stop)
		wg.Wait()
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d of %d lookups that started after BumpEpoch returned found a session of the old epoch", n, afterBump.Load())
	}
	t.Logf("%d lookups after the bumps returned, 0 accepted", afterBump.Load())
}

// TestEpochBumpRightAfterOwnCommit puts another store's epoch bump in the
// narrowest window: after this store's COMMIT and before it accounts for
// its own write. The cache must not take the bump for its own write.
func TestEpochBumpRightAfterOwnCommit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	warm := openStore(t, path, sqlitestore.Config{})
	other := openStore(t, path, sqlitestore.Config{})
	victim, anon, touched := commitNew(t, warm, "alice"), commitNew(t, warm, ""), commitNew(t, warm, "bob")
	found(t, warm, victim.Key)
	found(t, warm, anon.Key)

	var hookErr error
	sqlitestore.SetAfterCommitHook(warm, func() {
		sqlitestore.SetAfterCommitHook(warm, nil)
		_, hookErr = other.BumpEpoch(ctx)
	})
	touched.Version++
	if err := warm.Commit(ctx, touched); err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	for _, rec := range []cloakroom.Record{victim, anon, touched} {
		if found(t, warm, rec.Key) {
			t.Error("session of the old epoch found after another store's bump right after our commit")
		}
	}
}

// epochChildEnv switches the test binary, re-executed by
// TestEpochEndsReachEveryNode, into a child that bumps the epoch.
const epochChildEnv = "SQLITESTORE_TEST_EPOCH_CHILD_DB"

// TestEpochEndsReachEveryNode: an epoch bump is reported as End{Epoch} to
// the WatchEnds subscribers of every store on the file, whether it was
// made by one of them or by another process, and that process's bump ends
// the sessions in every warm cache.
func TestEpochEndsReachEveryNode(t *testing.T) {
	ctx := context.Background()
	if path := os.Getenv(epochChildEnv); path != "" {
		s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{PurgeInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.BumpEpoch(ctx); err != nil {
			t.Fatal(err)
		}
		return
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	nodes := []*sqlitestore.Store{
		openStore(t, path, sqlitestore.Config{}),
		openStore(t, path, sqlitestore.Config{}),
		openStore(t, path, sqlitestore.Config{DisableCache: true}),
	}
	ends := make([]<-chan cloakroom.End, len(nodes))
	for i, node := range nodes {
		ends[i] = watchEnds(t, node)
	}
	waitEpoch := func(epoch uint64) {
		t.Helper()
		for i := range nodes {
			waitEnd(t, ends[i], fmt.Sprintf("epoch %d on node %d", epoch, i), func(e cloakroom.End) bool { return e.Epoch == epoch })
		}
	}

	if _, err := nodes[0].BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	waitEpoch(1)

	var recs []cloakroom.Record
	for _, user := range []string{"alice", ""} {
		rec := storetest.NewRecord(user, time.Now())
		rec.Epoch = 1
		if err := nodes[1].Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		for _, node := range nodes {
			found(t, node, rec.Key)
		}
	}
	runTestChild(t, "TestEpochEndsReachEveryNode", epochChildEnv+"="+path)
	for _, node := range nodes {
		for _, rec := range recs {
			if found(t, node, rec.Key) {
				t.Error("session found after another process bumped the epoch")
			}
		}
	}
	waitEpoch(2)
}

// TestEpochBumpDeletesEndedRows: the sessions and the records that end
// with them leave the file with the bump, not at the next purge.
func TestEpochBumpDeletesEndedRows(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{PurgeInterval: -1})
	for range 3 {
		commitNew(t, s, "alice")
		commitNew(t, s, "")
	}
	tokens, tombstone := newAux("tokens", true, 0), newAux("tombstone", false, 0)
	for _, rec := range []cloakroom.AuxRecord{tokens, tombstone} {
		if err := s.CommitAux(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countSessions(t, s); n != 0 {
		t.Errorf("%d sessions of the old epoch left in the file", n)
	}
	var keys [][]byte
	rows, err := s.DB().QueryContext(ctx, "SELECT key FROM aux_records")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 1 || !bytes.Equal(keys[0], tombstone.Key[:]) {
		t.Errorf("auxiliary records left: %d, want only the one that outlives the sessions", len(keys))
	}
}

// TestEpochEndsRowsLeftInTheFile: when the deletion that follows the bump
// does not run (its context ends right after the bump's commit), the rows
// of the old epoch stay in the file until a purge, and are still dead to
// every path: Find, List, Commit, Rotate and FindAux, here and on another
// store.
func TestEpochEndsRowsLeftInTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	cfg := sqlitestore.Config{PurgeInterval: -1}
	s, other := openStore(t, path, cfg), openStore(t, path, cfg)
	user, anon := commitNew(t, s, "alice"), commitNew(t, s, "")
	tokens := newAux("tokens", true, 0)
	ctx := context.Background()
	if err := s.CommitAux(ctx, tokens); err != nil {
		t.Fatal(err)
	}
	for _, node := range []*sqlitestore.Store{s, other} {
		found(t, node, user.Key)
		found(t, node, user.Key)
	}

	bumpCtx, cancel := context.WithCancel(ctx)
	sqlitestore.SetAfterCommitHook(s, func() {
		sqlitestore.SetAfterCommitHook(s, nil)
		cancel()
	})
	if epoch, err := s.BumpEpoch(bumpCtx); err != nil || epoch != 1 {
		t.Fatalf("BumpEpoch = %d, %v; want 1", epoch, err)
	}
	if n := countSessions(t, s); n != 2 {
		t.Fatalf("%d sessions in the file, want the 2 the bump left there", n)
	}
	for _, node := range []*sqlitestore.Store{s, other} {
		for _, rec := range []cloakroom.Record{user, anon} {
			if found(t, node, rec.Key) {
				t.Error("session of the old epoch found")
			}
			next := rec
			next.Version++
			if err := node.Commit(ctx, next); !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("Commit of a session of the old epoch: err = %v, want ErrNotFound", err)
			}
			renewed := storetest.NewRecord(rec.UserID, time.Now())
			renewed.Epoch = 1
			if _, err := node.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, New: renewed}); !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("renewal of a session of the old epoch: err = %v, want ErrNotFound", err)
			}
		}
		if list, err := node.List(ctx, user.UserID); err != nil || len(list) != 0 {
			t.Errorf("List = %d sessions, %v; want none", len(list), err)
		}
		if auxFound(t, node, tokens.Key) {
			t.Error("a record that ends with the sessions found after the bump")
		}
	}
	if n, err := s.Purge(ctx); err != nil || n != 3 {
		t.Fatalf("Purge = %d, %v; want the 2 sessions and the record", n, err)
	}
}

// TestAuxPurge: expired records leave the file at the purge; live ones
// stay.
func TestAuxPurge(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{Now: clock.Now, PurgeInterval: -1})
	short, long := newAux("short", false, 0), newAux("long", false, 0)
	short.Expires, long.Expires = clock.Now().Add(time.Minute), clock.Now().Add(time.Hour)
	for _, rec := range []cloakroom.AuxRecord{short, long} {
		if err := s.CommitAux(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Minute)
	if n, err := s.Purge(ctx); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want 1", n, err)
	}
	var left int
	if err := s.DB().QueryRowContext(ctx, "SELECT count(*) FROM aux_records").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 || !auxFound(t, s, long.Key) {
		t.Fatalf("%d records left after the purge, want the live one", left)
	}
}

// TestAuxExpiresInPast: a record that would be expired when written is
// refused as invalid input, not stored.
func TestAuxExpiresInPast(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{})
	rec := newAux("past", false, 0)
	rec.Expires = time.Now().Add(-time.Second)
	if err := s.CommitAux(ctx, rec); !errors.Is(err, cloakroom.ErrInvalidInput) {
		t.Fatalf("CommitAux of an expired record: err = %v, want ErrInvalidInput", err)
	}
	if auxFound(t, s, rec.Key) {
		t.Fatal("expired record stored")
	}
}
