package redisstore

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/storetest"
	"github.com/redis/rueidis"
)

// stallProxy forwards TCP connections to a Redis server and can hold back
// everything the server sends, as a stalled network or a starved
// connection reader would: the client's invalidations and heartbeats then
// stop arriving, while the server goes on.
type stallProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	held  bool
	cond  *sync.Cond
	conns []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go func() { io.Copy(server, client); server.Close() }()
		go p.downstream(client, server)
	}
}

// downstream copies the server's bytes to the client, waiting while held.
func (p *stallProxy) downstream(client, server net.Conn) {
	defer client.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		p.mu.Lock()
		for p.held {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

func (p *stallProxy) release() {
	p.mu.Lock()
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.release()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// skipOnCluster skips a test that needs a single Redis server when the
// tests' Redis is a cluster, saying why.
func skipOnCluster(t *testing.T, why string) {
	t.Helper()
	if testservers.RedisClusterWanted() {
		t.Skip("the tests' Redis is a cluster: " + why)
	}
}

// revocations are the ways a session ends on purpose, each run on node A
// against a session node B holds in its cache.
var revocations = []struct {
	name   string
	revoke func(ctx context.Context, a *Store, rec cloakroom.Record) error
}{
	{"Delete", func(ctx context.Context, a *Store, rec cloakroom.Record) error { return a.Delete(ctx, rec.Key) }},
	{"BumpGeneration", func(ctx context.Context, a *Store, rec cloakroom.Record) error {
		_, err := a.BumpGeneration(ctx, rec.UserID)
		return err
	}},
	{"Rotate", func(ctx context.Context, a *Store, rec cloakroom.Record) error {
		next := storetest.NewRecord(rec.UserID, time.Now())
		next.Generation, next.Epoch = rec.Generation, rec.Epoch
		_, err := a.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, New: next})
		return err
	}},
	{"BumpEpoch", func(ctx context.Context, a *Store, rec cloakroom.Record) error {
		_, err := a.BumpEpoch(ctx)
		return err
	}},
}

// newSession returns a new session of user at s's current epoch, as a
// login makes it.
func newSession(t testing.TB, s *Store, user string) cloakroom.Record {
	t.Helper()
	rec := storetest.NewRecord(user, time.Now())
	epoch, err := s.Epoch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec.Epoch = epoch
	return rec
}

// TestStalledNodeDoesNotAccept holds back everything Redis sends to node
// B, so B hears neither the end of a session it has cached nor its own
// heartbeats. Once node A's revoking call has returned, B must not accept
// the session: its lease has run out, so it asks Redis (and waits for the
// stalled connection) instead of answering from its cache.
func TestStalledNodeDoesNotAccept(t *testing.T) {
	skipOnCluster(t, "a cluster client talks to the nodes directly, past the proxy")
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	a := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	proxy := startStallProxy(t, addr)
	clientB, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{proxy.addr()}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clientB.Close)
	b := newTestStore(t, clientB, Config{Prefix: prefix})

	for i, rv := range revocations {
		t.Run(rv.name, func(t *testing.T) {
			rec := newSession(t, a, fmt.Sprintf("wendy-%d", i))
			if err := a.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			warmCache(t, b, rec)

			proxy.hold()
			defer proxy.release()
			if err := rv.revoke(ctx, a, rec); err != nil {
				t.Fatal(err)
			}
			fctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, found, err := b.Find(fctx, rec.Key)
			cancel()
			if found {
				t.Fatalf("node B accepted the revoked session (err %v)", err)
			}
			if err == nil {
				t.Fatal("node B answered without Redis while its connection was stalled")
			}
			if b.lease.valid(b.recent.now()) {
				t.Fatal("node B still trusts its cache after the revoking call returned, though it heard nothing")
			}
			proxy.release()
			awaitLease(t, b)
			if _, found, err := b.Find(ctx, rec.Key); err != nil || found {
				t.Fatalf("node B after the stall: %v, %v; want not found", found, err)
			}
		})
	}
}

// TestNoAcceptAfterRevocation revokes sessions on node A that node B has
// cached, and checks B at once when the call returns, over many rounds:
// B must never accept. It logs how often B had already heard of the end
// and how often its lease had run out instead.
func TestNoAcceptAfterRevocation(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	a := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	b := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix})
	const rounds = 20
	for _, rv := range revocations {
		var cached, leaseOut int
		var took []time.Duration
		for i := 0; i < rounds; i++ {
			rec := newSession(t, a, fmt.Sprintf("xena-%s-%d", rv.name, i))
			if err := a.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			warmCache(t, b, rec)
			cached++
			began := time.Now()
			if err := rv.revoke(ctx, a, rec); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(began))
			if !b.lease.valid(b.recent.now()) {
				leaseOut++
			}
			if _, found, err := b.Find(ctx, rec.Key); err != nil || found {
				t.Fatalf("%s round %d: node B accepted the session after the revoking call returned: %v, %v", rv.name, i, found, err)
			}
		}
		slices.Sort(took)
		t.Logf("%s: %d rounds, %d with the session in B's cache, %d with B's lease run out when the call returned; 0 accepted; the call took %v (median), %v (max)",
			rv.name, rounds, cached, leaseOut, took[len(took)/2], took[len(took)-1])
	}
}
