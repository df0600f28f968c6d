package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/storetest"
)

// TestEpochBumpOnEveryNode bumps the global epoch through A while B and C
// serve sessions of the old epoch from their caches and look them up back
// to back. No lookup that starts after A's BumpEpoch returned may find one,
// on B or C, also when C's listener is stalled (its cache still holds them,
// unrefreshed); nothing of the old epoch can be written back, renewed or
// created there afterwards; records that end with the sessions end too;
// and WatchEnds reports End{Epoch} on every node.
func TestEpochBumpOnEveryNode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall bool
		// Acknowledged: a long lease, so the bump returns on B's and C's
		// acknowledgements, never by waiting it out. Stalled: a short
		// one, since the bump waits out C's.
		lease time.Duration
	}{
		{"Acknowledged", false, 2 * time.Second},
		{"StalledListener", true, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			stores, _, clock := nodes(t, 3, pgstore.Config{Cache: true, CacheLease: tc.lease})
			a, b, c := stores[0], stores[1], stores[2]
			var ends []<-chan cloakroom.End
			for _, s := range stores {
				ch := watchEnds(t, s)
				expectEnd(t, ch, "the start of listening", func(e cloakroom.End) bool { return e.All })
				ends = append(ends, ch)
			}
			// A relies on acknowledgements alone once it has listened for
			// a lease.
			waitFor(t, 10*time.Second, "A listening for a lease", func() bool { return pgstore.Settled(a) })

			// Sessions of the old epoch written through each node, and
			// records beside them.
			user := "alice-" + rand.Text()[:8]
			var sessions []cloakroom.Record
			for _, s := range stores {
				for _, owner := range []string{user, ""} {
					rec := storetest.NewRecord(owner, clock.Now())
					if err := s.Commit(ctx, rec); err != nil {
						t.Fatal(err)
					}
					sessions = append(sessions, rec)
				}
			}
			tokens := cloakroom.AuxRecord{Key: cloakroom.AuxKey("pgstore_test", "tokens", user), Version: 1,
				Expires: clock.Now().Add(time.Hour), EndsWithSessions: true, Data: []byte("sealed")}
			tombstone := cloakroom.AuxRecord{Key: cloakroom.AuxKey("pgstore_test", "tombstone", user), Version: 1,
				Expires: clock.Now().Add(time.Hour), Data: []byte("logged out")}
			for _, rec := range []cloakroom.AuxRecord{tokens, tombstone} {
				if err := a.CommitAux(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			keys := make([]cloakroom.Key, len(sessions))
			for i, rec := range sessions {
				keys[i] = rec.Key
				warmTrusted(t, b, rec.Key)
			}
			release := func() {}
			if tc.stall {
				release = stallCaching(t, c, keys...)
			} else {
				for _, k := range keys {
					warmTrusted(t, c, k)
				}
			}
			defer release()

			// B and C look every session up back to back until each has
			// made 20 passes that started after the bump returned.
			var returned atomic.Bool
			var acceptedAfter atomic.Int64
			var lookups sync.WaitGroup
			for _, s := range []*pgstore.Store{b, c} {
				lookups.Go(func() {
					for passes := 0; passes < 20; {
						after := returned.Load()
						for _, k := range keys {
							_, found, err := s.Find(ctx, k)
							if err != nil {
								t.Error(err)
								return
							}
							if found && after {
								acceptedAfter.Add(1)
							}
						}
						if after {
							passes++
						}
					}
				})
			}
			epoch, err := a.BumpEpoch(ctx)
			returned.Store(true)
			if err != nil {
				t.Fatal(err)
			}
			lookups.Wait()
			if n := acceptedAfter.Load(); n != 0 {
				t.Fatalf("B and C found a session of the old epoch %d times in lookups that started after A's BumpEpoch returned", n)
			}
			if tc.stall {
				for _, k := range keys {
					if !pgstore.Cached(c, k) {
						t.Fatal("C's stalled listener dropped an entry: the test did not stall it")
					}
				}
			} else {
				for _, k := range keys {
					if pgstore.Cached(b, k) || pgstore.Cached(c, k) {
						t.Fatal("BumpEpoch on A returned while B or C still cached a session of the old epoch")
					}
				}
				if n := pgstore.WaitedOut(a); n != 0 {
					t.Fatalf("the bump waited out the lease %d times, with every node acknowledging", n)
				}
			}

			// Nothing of the old epoch is accepted by a write either.
			for _, s := range []*pgstore.Store{b, c} {
				for _, rec := range sessions {
					update := rec
					update.Version = 2
					if err := s.Commit(ctx, update); !errors.Is(err, cloakroom.ErrNotFound) {
						t.Fatalf("writing back a session of the old epoch: %v, want ErrNotFound", err)
					}
					renewal := storetest.NewRecord(rec.UserID, clock.Now())
					if _, err := s.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, New: renewal}); !errors.Is(err, cloakroom.ErrNotFound) {
						t.Fatalf("renewing a session of the old epoch: %v, want ErrNotFound", err)
					}
				}
				// A login that read the epoch before the bump.
				if _, err := s.Rotate(ctx, cloakroom.Rotation{New: storetest.NewRecord(user, clock.Now())}); !errors.Is(err, cloakroom.ErrNotFound) {
					t.Fatalf("login at the old epoch: %v, want ErrNotFound", err)
				}
				if _, found, err := s.FindAux(ctx, tokens.Key); err != nil || found {
					t.Fatalf("FindAux of a record that ends with the sessions after the bump: found=%v err=%v", found, err)
				}
				if _, found, err := s.FindAux(ctx, tombstone.Key); err != nil || !found {
					t.Fatalf("FindAux of a record that outlives the sessions after the bump: found=%v err=%v", found, err)
				}
			}
			for _, s := range stores {
				if list, err := s.List(ctx, user); err != nil || len(list) != 0 {
					t.Fatalf("List after the bump = %d sessions, %v; want none", len(list), err)
				}
			}

			release()
			for i, ch := range ends {
				expectEnd(t, ch, "BumpEpoch", func(e cloakroom.End) bool { return e.Epoch == epoch })
				if i == 2 && tc.stall {
					// Once running again, C drops what it held and
					// trusts its cache again.
					waitFor(t, 5*time.Second, "C dropping the old epoch", func() bool {
						for _, k := range keys {
							if pgstore.Cached(c, k) {
								return false
							}
						}
						return true
					})
					waitFor(t, 5*time.Second, "C's lease", func() bool { return pgstore.Trusted(c) })
				}
			}
			// Sessions of the new epoch live on every node.
			fresh := storetest.NewRecord(user, clock.Now())
			fresh.Epoch = epoch
			if err := c.Commit(ctx, fresh); err != nil {
				t.Fatal(err)
			}
			for _, s := range stores {
				if _, found, err := s.Find(ctx, fresh.Key); err != nil || !found {
					t.Fatalf("Find of a session of the new epoch: found=%v err=%v", found, err)
				}
			}
		})
	}
}

// TestEpochMigration opens a store on a schema an older version migrated,
// holding a session written before epochs existed: the session is found,
// as of epoch 0, can be updated, and dies with the first bump.
func TestEpochMigration(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, testservers.Postgres(t))
	schema := freshSchema(t, pool)
	if err := pgstore.MigrateFirst(ctx, pool, schema, 1); err != nil {
		t.Fatal(err)
	}
	clock := storetest.NewClock(storetest.Start)
	old := storetest.NewRecord("alice", clock.Now())
	blob, err := formatOneBlob(old)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "sessions"}.Sanitize()+`
		(key, user_id, handle, generation, version, created_at, expiry, record) VALUES ($1, $2, $3, 0, 1, $4, $5, $6)`,
		old.Key[:], old.UserID, old.Handle, old.CreatedAt, old.Expiry(), blob)
	if err != nil {
		t.Fatal(err)
	}

	s := newStore(t, pool, pgstore.Config{Schema: schema, Now: clock.Now, Cache: true})
	if n := countRows(t, pool, schema, "schema_migrations"); n != pgstore.MigrationCount {
		t.Fatalf("schema_migrations has %d rows, want %d", n, pgstore.MigrationCount)
	}
	got, found, err := s.Find(ctx, old.Key)
	if err != nil || !found || got.Epoch != 0 || got.UserID != old.UserID {
		t.Fatalf("Find of a session stored before epochs = %+v, %v, %v; want it, at epoch 0", got, found, err)
	}
	got.Version, got.Data = 2, []byte("updated")
	if err := s.Commit(ctx, got); err != nil {
		t.Fatalf("updating a session stored before epochs: %v", err)
	}
	if _, err := s.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.Find(ctx, old.Key); err != nil || found {
		t.Fatalf("Find after the first bump: found=%v err=%v; want not found", found, err)
	}
}

// formatOneBlob encodes rec as a version without epochs did: format 1,
// without the epoch that follows the fixed fields.
func formatOneBlob(rec cloakroom.Record) ([]byte, error) {
	if rec.Epoch != 0 {
		return nil, errors.New("format 1 has no epoch")
	}
	blob, err := rec.MarshalBinary()
	if err != nil {
		return nil, err
	}
	const fixed = 1 + 32 + 6*8 + 1 // format, key, six numbers, a flag
	if blob[0] != 2 || blob[fixed] != 0 {
		return nil, errors.New("not the format 2 this test knows")
	}
	blob[0] = 1
	return append(blob[:fixed], blob[fixed+1:]...), nil
}

// watchEnds subscribes to s's end notifications until the test ends and
// returns the channel they arrive on; notifications beyond its buffer are
// dropped.
func watchEnds(t testing.TB, s *pgstore.Store) <-chan cloakroom.End {
	ctx, cancel := context.WithCancel(context.Background())
	ends := make(chan cloakroom.End, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchEnds(ctx, func(e cloakroom.End) {
			select {
			case ends <- e:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ends
}

// expectEnd reads ends until one matches, failing t if none comes within
// 10 s.
func expectEnd(t testing.TB, ends <-chan cloakroom.End, what string, match func(cloakroom.End) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-ends:
			if match(e) {
				return
			}
		case <-timeout:
			t.Fatalf("no end reported for %s", what)
		}
	}
}
