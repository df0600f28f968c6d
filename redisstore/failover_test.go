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
	"github.com/cloakroom/cloakroom/storetest"
	"github.com/redis/rueidis"
)

// TestFailoverUnderLoad runs two nodes on a six-node Redis Cluster of its
// own: node B checks sessions back to back while node A revokes them one
// after another, and a master is killed. No session may be accepted by B
// once A's revocation of it returned, nothing may panic, and once the
// master's replica has taken over every live session must be found again.
// It logs how long that took after the kill.
func TestFailoverUnderLoad(t *testing.T) {
	cluster := testservers.StartRedisCluster(t)
	seeds := cluster.Addrs()
	ctx := context.Background()
	masters, err := cluster.Masters(ctx, seeds[0])
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters: %v, %v", masters, err)
	}
	newNode := func() *Store {
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: seeds, ConnWriteTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		return newTestStore(t, client, Config{ReplicaAcks: 1})
	}
	a, b := newNode(), newNode()

	const sessions = 90
	recs := make([]cloakroom.Record, sessions)
	for i := range recs {
		recs[i] = storetest.NewRecord(fmt.Sprintf("yuri-%d", i), time.Now())
		if err := a.Commit(ctx, recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	// revokedAt[i] is when A's revocation of session i returned (ns since
	// start), 0 while it lives.
	start := time.Now()
	revokedAt := make([]atomic.Int64, sessions)
	var violations, checks, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := w; ; i = (i + 1) % sessions {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Since(start)
				fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				_, found, err := b.Find(fctx, recs[i].Key)
				cancel()
				checks.Add(1)
				if err != nil {
					failures.Add(1)
					time.Sleep(time.Millisecond)
				}
				if r := revokedAt[i].Load(); found && r != 0 && time.Duration(r) < began {
					violations.Add(1)
				}
			}
		})
	}
	// A revokes every third session, one every 20ms, through the failover.
	var revokeErrors atomic.Int64
	var revokeFailures sync.Map // session index -> true: its revocation failed
	wg.Go(func() {
		for i := 0; i < sessions; i += 3 {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := a.Delete(rctx, recs[i].Key)
			cancel()
			if err != nil {
				revokeErrors.Add(1) // not acknowledged: the session may live on
				revokeFailures.Store(i, true)
				continue
			}
			revokedAt[i].Store(int64(time.Since(start)))
		}
	})

	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	cluster.StopNode(masters[0])

	// The outage, as users see it, starts with the first failed sweep over
	// every session, and ends with the first sweep after it that finds
	// each live session and no revoked one. Sessions whose revocation
	// failed may be either, and are left out.
	var outageFrom, recoveredAfter time.Duration
	for deadline := killed.Add(60 * time.Second); ; {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("not every live session was found again within 60s of killing master %s", masters[0])
		}
		began := time.Now()
		ok := true
		for i := range recs {
			revoked := revokedAt[i].Load() != 0
			if !revoked && revokeFailed(&revokeFailures, i) {
				continue
			}
			fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, found, err := b.Find(fctx, recs[i].Key)
			cancel()
			if err != nil || found == revoked {
				ok = false
				break
			}
		}
		switch {
		case !ok && outageFrom == 0:
			outageFrom = began.Sub(killed)
		case ok && outageFrom != 0:
			recoveredAfter = began.Sub(killed)
		}
		if recoveredAfter != 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := violations.Load(); n != 0 {
		t.Fatalf("node B accepted a session %d times after its revocation returned", n)
	}
	t.Logf("killed master %s (cluster-node-timeout %v): checks failed from %v after the kill, and every live session was found again %v after it; %d checks on B, %d failed (503 to a user), 0 accepted after a revocation; %d revocations failed during the failover",
		masters[0], testservers.ClusterNodeTimeout, outageFrom.Round(time.Millisecond), recoveredAfter.Round(time.Millisecond), checks.Load(), failures.Load(), revokeErrors.Load())
}

func revokeFailed(failures *sync.Map, i int) bool {
	_, ok := failures.Load(i)
	return ok
}
