package redisstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/redis/rueidis"
)

// watchEpochs subscribes to s's ends and returns a channel of the epochs
// they announce.
func watchEpochs(t *testing.T, s *Store) <-chan uint64 {
	t.Helper()
	epochs := make(chan uint64, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.WatchEnds(ctx, func(e cloakroom.End) {
			if e.Epoch != 0 {
				epochs <- e.Epoch
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return epochs
}

// awaitEpochEnd waits for End{Epoch: want} on epochs, skipping earlier
// epochs; the bound only keeps a lost notification from hanging the test.
func awaitEpochEnd(t *testing.T, node string, epochs <-chan uint64, want uint64) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-epochs:
			if e == want {
				return
			}
		case <-timeout:
			t.Fatalf("node %s: no End{Epoch: %d}", node, want)
		}
	}
}

// TestEpochBumpOnEveryNode bumps the global epoch on node A while nodes B,
// C and D, each with its cache on, check a user's and an anonymous session
// they hold in their caches back to back; every other round, everything
// Redis sends to node D is held back instead. Once BumpEpoch has returned,
// no node may accept a session of the old epoch: the checks begun after
// the return are counted (0 accepted), and a stalled D, which heard
// nothing, must not answer from its cache. Every node's WatchEnds reports
// End{Epoch}, and no node finds an auxiliary record bound to the old
// epoch, while one that is not bound lives on.
func TestEpochBumpOnEveryNode(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	a := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	nodes := map[string]*Store{
		"A": a,
		"B": newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix}),
		"C": newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix}),
	}
	// A cluster client finds the other nodes and talks to them directly,
	// past a proxy: the stalled node needs a single server.
	var proxy *stallProxy
	if !testservers.RedisClusterWanted() {
		proxy = startStallProxy(t, addr)
		clientD, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{proxy.addr()}, DisableRetry: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(clientD.Close)
		nodes["D"] = newTestStore(t, clientD, Config{Prefix: prefix})
	} else {
		t.Log("on a cluster: no stalled node")
	}
	epochs := make(map[string]<-chan uint64)
	for name, s := range nodes {
		epochs[name] = watchEpochs(t, s)
	}

	const rounds, checksAfter = 8, 50
	var accepted, checked int64
	for round := 0; round < rounds; round++ {
		sessions := []cloakroom.Record{newSession(t, a, fmt.Sprintf("yann-%d", round)), newSession(t, a, "")}
		bound, loose := auxRecord(t, a, fmt.Sprintf("tokens-%d", round), true), auxRecord(t, a, fmt.Sprintf("tombstone-%d", round), false)
		for _, rec := range sessions {
			if err := a.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			for _, s := range nodes {
				warmCache(t, s, rec)
			}
		}

		stalled := proxy != nil && round%2 == 1
		var returned atomic.Bool
		var wg sync.WaitGroup
		for name, s := range nodes {
			if name == "A" || name == "D" && stalled {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for after := 0; after < checksAfter; {
					began := returned.Load()
					for _, rec := range sessions {
						_, found, err := s.Find(ctx, rec.Key)
						if err != nil {
							t.Errorf("node %s: Find: %v", name, err)
							return
						}
						if began {
							atomic.AddInt64(&checked, 1)
							if found {
								atomic.AddInt64(&accepted, 1)
							}
						}
					}
					if began {
						after++
					}
				}
			}()
		}

		if stalled {
			proxy.hold()
		}
		epoch, err := a.BumpEpoch(ctx)
		returned.Store(true)
		if err != nil {
			t.Fatal(err)
		}
		if d := nodes["D"]; stalled {
			for _, rec := range sessions {
				fctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				_, found, err := d.Find(fctx, rec.Key)
				cancel()
				if found {
					t.Fatalf("round %d: the stalled node accepted a session of the old epoch (err %v)", round, err)
				}
				if err == nil {
					t.Fatalf("round %d: the stalled node answered without Redis", round)
				}
			}
			proxy.release()
			awaitLease(t, d)
		}
		wg.Wait()
		for name, s := range nodes {
			awaitEpochEnd(t, name, epochs[name], epoch)
			for _, rec := range sessions {
				if _, found, err := s.Find(ctx, rec.Key); err != nil || found {
					t.Fatalf("round %d: node %s after the bump: %v, %v; want not found", round, name, found, err)
				}
			}
			if got, err := s.Epoch(ctx); err != nil || got != epoch {
				t.Fatalf("round %d: node %s: Epoch = %d, %v; want %d", round, name, got, err, epoch)
			}
			if _, found, err := s.FindAux(ctx, bound.Key); err != nil || found {
				t.Fatalf("round %d: node %s finds a record bound to the old epoch: %v, %v", round, name, found, err)
			}
			if _, found, err := s.FindAux(ctx, loose.Key); err != nil || !found {
				t.Fatalf("round %d: node %s lost a record not bound to the epoch: %v, %v", round, name, found, err)
			}
		}
	}
	if accepted != 0 {
		t.Fatalf("%d of %d checks begun after BumpEpoch returned accepted a session of the old epoch", accepted, checked)
	}
	t.Logf("%d rounds on %d nodes: %d checks begun after BumpEpoch returned, 0 accepted", rounds, len(nodes), checked)
}

// TestEpochAloneRevokes raises the epoch behind the stores' back, as a
// restored backup or a manual INCR would, so no end is announced: every
// node must still stop accepting the old sessions, which it learns from
// the heartbeats through the epoch's node, and a node made afterwards must
// not accept them at all.
func TestEpochAloneRevokes(t *testing.T) {
	ctx := context.Background()
	addr, prefix := testservers.RedisFresh(t)
	client := newTestClient(t, addr)
	writer := newTestStore(t, client, Config{Prefix: prefix})
	reader := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	user, anon := newSession(t, writer, "zoe"), newSession(t, writer, "")
	for _, rec := range []cloakroom.Record{user, anon} {
		if err := writer.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		warmCache(t, reader, rec)
	}
	if err := client.Do(ctx, client.B().Incr().Key(writer.epochKey()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []cloakroom.Record{user, anon} {
		gone := func(_ cloakroom.Record, found bool) bool { return !found }
		awaitFind(t, writer, rec.Key, "writer after the epoch moved", gone)
		awaitFind(t, reader, rec.Key, "reader after the epoch moved", gone)
	}

	late := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	if got, err := late.Epoch(ctx); err != nil || got != 1 {
		t.Fatalf("a store made after the bump: Epoch = %d, %v; want 1", got, err)
	}
	for _, rec := range []cloakroom.Record{user, anon} {
		if _, found, err := late.Find(ctx, rec.Key); err != nil || found {
			t.Fatalf("a store made after the bump finds a session of the old epoch: %v, %v", found, err)
		}
	}
}

// auxRecord creates an auxiliary record through s, at its current epoch.
func auxRecord(t *testing.T, s *Store, id string, endsWithSessions bool) cloakroom.AuxRecord {
	t.Helper()
	ctx := context.Background()
	epoch, err := s.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := cloakroom.AuxRecord{Key: cloakroom.AuxKey("redisstore-test", "kind", id), Version: 1,
		Expires: time.Now().Add(time.Hour), EndsWithSessions: endsWithSessions, Epoch: epoch, Data: []byte(id)}
	if err := s.CommitAux(ctx, rec); err != nil {
		t.Fatal(err)
	}
	return rec
}
