package redisstore

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// DefaultCacheLease is Config.CacheLease's default.
const DefaultCacheLease = 250 * time.Millisecond

// watchdogLeases is how many leases without a heartbeat back make a Store
// subscribe again, and watchdogMin the least time. Generous: rueidis
// notices broken connections itself, so this is for a subscription that
// went silent, and a resubscription stops the cache for CacheTTL.
const (
	watchdogLeases = 4
	watchdogMin    = 10 * time.Second
)

// lease bounds how long a Store trusts its client-side cache (see
// docs/redis-layout.md, "No accept after the response"). A Store sends a
// heartbeat through every Redis node onto its ends channel, where the
// scripts announce every session end in the same atomic step as the
// change. Messages published on one node reach a subscriber in the order
// that node ran them, so when a Store has received its own heartbeat sent
// at t through every node, it has received every end any node announced
// before it ran that heartbeat, and marked it. It then trusts its cache
// until t + CacheLease, and the epoch it knows: the round's heartbeat
// through the epoch's node carries the epoch (see epoch.go). A revoking
// call (Delete, BumpGeneration, BumpEpoch, Rotate) waits CacheLease after
// its script returns: by then every other Store either received the end
// (its heartbeat was run after the script) or stopped trusting its cache
// (its lease dates from before the script). ack.go shortens the wait.
type lease struct {
	until   atomic.Int64 // recent-writes clock; the cache is trusted before it
	blocked atomic.Int64 // no renewal takes effect before this
}

// valid reports whether the cache may be trusted at now.
func (l *lease) valid(now time.Duration) bool { return int64(now) < l.until.Load() }

// renew extends the lease to until, unless it is blocked at now.
func (l *lease) renew(now, until time.Duration) {
	if int64(now) < l.blocked.Load() {
		return
	}
	for {
		cur := l.until.Load()
		if int64(until) <= cur || l.until.CompareAndSwap(cur, int64(until)) {
			return
		}
	}
}

// block ends the lease and refuses renewals for d: after a resubscription
// ends may have been missed, and the cache may hold entries they would
// have overruled until those entries expire (CacheTTL).
func (l *lease) block(now, d time.Duration) {
	l.until.Store(0)
	l.blocked.Store(int64(now + d))
}

// heartbeats sends a heartbeat round every quarter lease until ctx ends
// (every second when the cache is off, only to watch the subscription).
// When none has come back for watchdogLeases leases (or rounds, without a
// cache; at least watchdogMin) while subscribed, the subscription is
// presumed dead and made again.
func (w *watcher) heartbeats(ctx context.Context) {
	every := w.s.cacheLease / 4
	if w.s.cacheTTL <= 0 {
		every = time.Second
	}
	watchdog := max(4*watchdogLeases*every, watchdogMin)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if w.subscribed.Load() && w.s.recent.now()-time.Duration(w.lastBack.Load()) > watchdog {
			w.lastBack.Store(int64(w.s.recent.now())) // one restart per watchdog period
			w.mu.Lock()
			if w.resubscribe != nil {
				w.resubscribe()
			}
			w.mu.Unlock()
		}
		w.heartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-w.kick:
		}
	}
}

// heartbeat publishes one round, through every node the client knows.
func (w *watcher) heartbeat(ctx context.Context) {
	if !w.subscribed.Load() {
		return
	}
	s := w.s
	nodes := s.client.Nodes()
	now := s.recent.now()
	w.mu.Lock()
	w.seq++
	seq := w.seq
	round := &heartbeatRound{sent: now, subscription: w.subscription.Load(), pending: make(map[string]bool, len(nodes)+1)}
	for addr := range nodes {
		round.pending[addr] = true
	}
	round.pending[epochHeartbeat] = true
	w.rounds[seq] = round
	for k, r := range w.rounds { // rounds older than a lease can no longer help
		if now-r.sent > s.cacheLease {
			delete(w.rounds, k)
		}
	}
	w.mu.Unlock()
	var head [17]byte
	head[0] = 'h'
	copy(head[1:9], w.id[:])
	binary.BigEndian.PutUint64(head[9:], seq)
	cctx, cancel := context.WithTimeout(ctx, s.cacheLease)
	defer cancel()
	for addr, node := range nodes {
		node.Do(cctx, node.B().Publish().Channel(s.endsChannel()).Message(string(head[:])+addr).Build()) // a failure leaves the round incomplete
	}
	// A bump this Store missed (before it subscribed, or a lost message)
	// leaves no cache entry for Redis to invalidate: the heartbeat through
	// the node that holds the epoch carries it, so a round that renews the
	// lease brings every bump that node ran before the heartbeat.
	epochHeartbeatScript.Exec(cctx, s.client, []string{s.epochKey()}, []string{s.endsChannel(), string(head[:]) + epochHeartbeat})
}

// heartbeatBack records the return of heartbeat seq sent through node
// addr, or through the epoch's node (epochHeartbeat and the epoch), and
// renews the lease when the whole round is back.
func (w *watcher) heartbeatBack(seq uint64, addr string) {
	if epoch, ok := strings.CutPrefix(addr, epochHeartbeat); ok {
		e, err := strconv.ParseUint(epoch, 10, 64)
		if err != nil {
			return // the round stays incomplete
		}
		w.s.raiseEpoch(e) // before the round can renew the lease
		addr = epochHeartbeat
	}
	w.mu.Lock()
	r := w.rounds[seq]
	if r == nil || r.subscription != w.subscription.Load() {
		w.mu.Unlock()
		return
	}
	delete(r.pending, addr)
	w.lastBack.Store(int64(w.s.recent.now()))
	done := len(r.pending) == 0
	if done {
		delete(w.rounds, seq)
	}
	w.mu.Unlock()
	if done && w.s.cacheTTL > 0 {
		s := w.s
		s.lease.renew(s.recent.now(), r.sent+s.cacheLease)
		w.startedOnce.Do(func() { close(w.started) })
	}
}

var _ rueidis.Client // the lease works through any rueidis client, standalone or cluster
