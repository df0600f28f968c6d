package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cloakroom/cloakroom"
)

// Notifications. Every Store on a schema sends them on one channel, and a
// listening Store hears them, its own included, on a dedicated connection.
// PostgreSQL delivers them to each listening session in commit order, one
// queue for all senders, which is what the cache lease below rests on.
//
// Payloads:
//
//	<key hex>              a session was written: drop it from caches
//	d:<key hex>            a session ended (deleted)
//	g:<generation>:<user>  the user's generation rose to <generation>
//	u:<user>               the same from older versions, generation unknown
//	e:<epoch>              the global epoch rose to <epoch>: every session
//	                       of a lower one ended
//	*                      drop everything (a user ID too long for a payload)
//	h:<node>:<sent>        heartbeat of a caching node (<sent>: its own clock)
//	r:<node>:<seq>         the end of revocation <seq> of <node>: everything
//	                       that revocation ended was sent before it
//	a:<acker>:<node>:<seq>[,<node>:<seq>...]
//	                       <acker> dropped what those revocations ended
//	x:<node>               a caching node stopped trusting its cache for good
//
// Anything else drops the whole cache and ends every watched session's
// certainty (End.All): the safe reading of a message from a newer version.
//
// # The lease
//
// A caching node sends a heartbeat h:<node>:<t>, with t read just before
// sending, every lease/4 on its listening connection. When it hears its own
// heartbeat, it has heard everything committed before t, because delivery
// follows commit order; its cache may then serve until t + lease. A node
// that stops hearing (a stalled goroutine, a silent network failure, a
// lagging server) stops serving from its cache within one lease and reads
// PostgreSQL instead.
//
// A revocation (Delete, BumpGeneration, BumpEpoch, Rotate) ends its
// transaction with a marker r:<node>:<seq>. Every caching node that hears
// the marker has dropped what the revocation ended, and acknowledges. The
// revoking node returns once it has heard its own marker (by then it has
// heard the heartbeat of every node that could be trusting its cache) and
// every such node has acknowledged; or once a lease has passed since the
// commit, or since the last heartbeat of each silent node: by then a node
// that did not hear the revocation has stopped trusting its cache. So when
// Delete, BumpGeneration, BumpEpoch or Rotate returns, no node serves what
// it ended from a cache.
const (
	prefixDeleted   = "d:"
	prefixBumped    = "g:"
	prefixUser      = "u:"
	prefixEpoch     = "e:"
	prefixHeartbeat = "h:"
	prefixMarker    = "r:"
	prefixAck       = "a:"
	prefixLeave     = "x:"
	flushPayload    = "*"
)

// Listener timing. The ping bounds how long a silently dead connection
// (no FIN, no RST) goes unnoticed by a Store without cache, which needs
// its listener only for WatchEnds; a caching Store's heartbeats do that.
const (
	listenerPingInterval = 5 * time.Second
	listenerPingTimeout  = 5 * time.Second
	listenerConnectLimit = 10 * time.Second
	reconnectMinDelay    = 100 * time.Millisecond
	reconnectMaxDelay    = 5 * time.Second
	leaveTimeout         = time.Second
)

// hub is a Store's listener: its connection, the cache's lease, the
// revocations waiting for acknowledgements and the WatchEnds subscribers.
type hub struct {
	s     *Store
	id    string        // this node's name in heartbeats and markers
	lease time.Duration // Config.CacheLease
	cache *cache        // nil without Config.Cache: no heartbeats, no acks

	pid       atomic.Uint32 // backend of the listening connection, 0 if none
	seq       atomic.Uint64
	stall     atomic.Pointer[stall] // tests: blocks handling while set
	waitedOut atomic.Int64          // revocations that waited out a lease

	mu    sync.Mutex
	peers map[string]int64 // caching nodes → when last heard (monotonic ns)
	waits map[uint64]*revocation
	subs  map[*subscriber]struct{}
	live  bool  // LISTEN in effect on the current connection
	since int64 // when it took effect (monotonic ns)
}

// revocation is one revoking call waiting until no node may serve what it
// ended. Fields after marker are guarded by hub.mu.
type revocation struct {
	seq    uint64
	marker string
	heard  chan struct{} // closed when the node heard its own marker
	done   chan struct{} // closed when every peer has acknowledged
	// pending are the peers that may still trust their caches, with
	// when each was last heard; lapse is when the last one's lease ends
	// at the latest.
	pending  map[string]int64
	lapse    int64
	finished bool
}

// subscriber is one WatchEnds call.
type subscriber struct{ fn func(endEvent) }

// endEvent mirrors cloakroom.End.
type endEvent struct {
	key        cloakroom.Key
	hasKey     bool
	user       string
	generation uint64
	epoch      uint64 // the global epoch rose to it; 0 for other ends
	all        bool
}

func newHub(s *Store, c *cache, lease time.Duration) *hub {
	var id [8]byte
	rand.Read(id[:])
	return &hub{
		s: s, id: hex.EncodeToString(id[:]), lease: lease, cache: c,
		peers: make(map[string]int64), waits: make(map[uint64]*revocation), subs: make(map[*subscriber]struct{}),
	}
}

// margin covers the rate difference of two machines' clocks over a lease.
func (h *hub) margin() int64 { return int64(h.lease/50 + time.Millisecond) }

// connect opens the dedicated listening connection, outside the pool so it
// never starves it. The cache fills again once LISTEN is in effect, so no
// invalidation sent afterwards can be missed; it serves once the first
// heartbeat comes back.
func (h *hub) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, listenerConnectLimit)
	defer cancel()
	cfg := h.s.pool.Config().ConnConfig.Copy()
	// The pool's tracer would see a heartbeat every lease/4: they are
	// the store's housekeeping, not the application's queries.
	cfg.Tracer = nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect invalidation listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{h.s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("pgstore: listen: %w", err)
	}
	h.pid.Store(conn.PgConn().PID())
	if h.cache != nil {
		h.cache.setEnabled(true)
	}
	h.mu.Lock()
	h.live, h.since = true, monotonic()
	subs := h.subscribers()
	h.mu.Unlock()
	// Ends sent while nobody listened were missed.
	for _, sub := range subs {
		sub.fn(endEvent{all: true})
	}
	return conn, nil
}

// disconnected forgets the connection's state: the cache stops serving at
// once, and peers heard through it are forgotten.
func (h *hub) disconnected() {
	if h.cache != nil {
		h.cache.setEnabled(false)
	}
	h.pid.Store(0)
	h.mu.Lock()
	h.live = false
	clear(h.peers)
	h.mu.Unlock()
}

// run applies notifications until ctx ends, reconnecting with backoff
// whenever the connection fails.
func (h *hub) run(ctx context.Context, conn *pgx.Conn) {
	defer h.s.running.Done()
	delay := reconnectMinDelay
	for {
		if conn != nil {
			err := h.receive(ctx, conn)
			h.disconnected()
			if ctx.Err() != nil {
				h.leave(conn)
				closeConn(conn)
				return
			}
			closeConn(conn)
			conn = nil
			h.s.log.WarnContext(ctx, "pgstore: invalidation listener lost; cache bypassed until it reconnects", "err", err)
			delay = reconnectMinDelay
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		var err error
		conn, err = h.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.s.log.WarnContext(ctx, "pgstore: invalidation listener cannot reconnect", "err", err, "retry_in", delay)
			delay = min(2*delay, reconnectMaxDelay)
			continue
		}
		h.s.log.InfoContext(ctx, "pgstore: invalidation listener reconnected")
	}
}

// leave tells the other nodes not to wait for this one's acknowledgements
// any more; its cache no longer serves.
func (h *hub) leave(conn *pgx.Conn) {
	if h.cache == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	payload := prefixLeave + h.id
	err := h.notify(ctx, conn, payload)
	if err != nil && conn.IsClosed() {
		// Stopping the listener in the middle of a heartbeat or an ack
		// closes its connection: say it through the pool, which Close
		// leaves open.
		_, err = h.s.pool.Exec(ctx, h.s.q.notify, h.s.channel, payload)
	}
	if err != nil {
		// The other nodes then wait out this one's lease on their next
		// revocations.
		h.s.log.Warn("pgstore: could not tell the other nodes that this one leaves", "err", err)
	}
}

// receive applies notifications, sends heartbeats (with a cache) or pings
// (without) and acknowledges markers, until the connection fails or ctx
// ends.
func (h *hub) receive(ctx context.Context, conn *pgx.Conn) error {
	interval := listenerPingInterval
	if h.cache != nil {
		interval = h.lease / 4
	}
	next := time.Now() // the cache serves after the first heartbeat
	drained, cancelDrained := context.WithCancel(ctx)
	cancelDrained()
	for {
		if h.cache != nil && !time.Now().Before(next) {
			h.wait()
			sent := monotonic()
			payload := prefixHeartbeat + h.id + ":" + strconv.FormatInt(sent, 10)
			if err := h.notify(ctx, conn, payload); err != nil {
				return fmt.Errorf("heartbeat: %w", err)
			}
			next = time.Now().Add(interval)
		}
		if h.cache == nil {
			next = time.Now().Add(interval)
		}
		waitCtx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(waitCtx)
		idle := waitCtx.Err() != nil
		cancel()
		if n != nil {
			// Everything already received is handled before the acks
			// go out, in one message.
			var acks []string
			for ; n != nil; n, _ = conn.WaitForNotification(drained) {
				h.wait()
				if ack := h.handle(n.Payload); ack != "" {
					acks = append(acks, ack)
				}
			}
			if err := h.acknowledge(ctx, conn, acks); err != nil {
				return fmt.Errorf("acknowledge: %w", err)
			}
		}
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !idle:
			return err
		}
		if h.cache == nil {
			pingCtx, cancel := context.WithTimeout(ctx, listenerPingTimeout)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		}
	}
}

// stall is a test's hold on the listener.
type stall struct {
	parked  chan struct{} // closed once the listener blocks in wait
	once    sync.Once
	release chan struct{}
}

// wait blocks while a test stalls the listener. It is called before every
// heartbeat and every notification handled, so once parked is closed the
// listener changes nothing until release: a notification it was already
// handling when the test stalled it has taken effect by then.
func (h *hub) wait() {
	if st := h.stall.Load(); st != nil {
		st.once.Do(func() { close(st.parked) })
		<-st.release
	}
}

// notify sends payload, which the listener builds from node names and
// numbers only, as a NOTIFY statement: an operator looking at
// pg_stat_activity tells the listener by its LISTEN and NOTIFY from the
// pool's connections, which use pg_notify().
func (h *hub) notify(ctx context.Context, conn *pgx.Conn, payload string) error {
	if strings.ContainsFunc(payload, func(r rune) bool { return !strings.ContainsRune("0123456789abcdefghrx:,", r) }) {
		return fmt.Errorf("pgstore: listener payload %q has unexpected characters", payload)
	}
	ctx, cancel := context.WithTimeout(ctx, listenerPingTimeout)
	defer cancel()
	_, err := conn.Exec(ctx, "NOTIFY "+pgx.Identifier{h.s.channel}.Sanitize()+", '"+payload+"'")
	return err
}

// acknowledge sends acks (node:seq each), as few messages as fit.
func (h *hub) acknowledge(ctx context.Context, conn *pgx.Conn, acks []string) error {
	for len(acks) > 0 {
		payload := prefixAck + h.id + ":" + acks[0]
		acks = acks[1:]
		for len(acks) > 0 && len(payload)+1+len(acks[0]) <= maxNotifyPayload {
			payload += "," + acks[0]
			acks = acks[1:]
		}
		if err := h.notify(ctx, conn, payload); err != nil {
			return err
		}
	}
	return nil
}

// handle applies one payload and returns the acknowledgement it calls
// for ("node:seq"), if any.
func (h *hub) handle(payload string) (ack string) {
	switch {
	case strings.HasPrefix(payload, prefixHeartbeat):
		h.heartbeat(payload[len(prefixHeartbeat):])
		return ""
	case strings.HasPrefix(payload, prefixMarker):
		return h.marker(payload[len(prefixMarker):])
	case strings.HasPrefix(payload, prefixAck):
		h.ack(payload[len(prefixAck):])
		return ""
	case strings.HasPrefix(payload, prefixLeave):
		h.left(payload[len(prefixLeave):])
		return ""
	}
	ev, written, ok := parseEnd(payload)
	if h.cache != nil {
		switch {
		case !ok || (ev.all && ev.user == "") || ev.epoch != 0:
			h.cache.flush()
		case ev.hasKey:
			h.cache.invalidateKey(ev.key)
		case written != nil:
			h.cache.invalidateKey(*written)
		case ev.user != "":
			h.cache.invalidateUser(ev.user)
		}
	}
	switch {
	case !ok:
		h.publish(endEvent{all: true})
	case written == nil:
		h.publish(ev)
	}
	return ""
}

// parseEnd reads a session payload: an end, or the key of a written
// session, or ok false for a payload it does not know.
func parseEnd(payload string) (ev endEvent, written *cloakroom.Key, ok bool) {
	var key cloakroom.Key
	decodeKey := func(s string) bool {
		if len(s) != hex.EncodedLen(len(key)) {
			return false
		}
		_, err := hex.Decode(key[:], []byte(s))
		return err == nil
	}
	switch {
	case payload == flushPayload:
		return endEvent{all: true}, nil, true
	case strings.HasPrefix(payload, prefixDeleted):
		if !decodeKey(payload[len(prefixDeleted):]) {
			return endEvent{}, nil, false
		}
		return endEvent{key: key, hasKey: true}, nil, true
	case strings.HasPrefix(payload, prefixBumped):
		gen, user, found := strings.Cut(payload[len(prefixBumped):], ":")
		g, err := strconv.ParseUint(gen, 10, 64)
		if !found || err != nil || user == "" {
			return endEvent{}, nil, false
		}
		return endEvent{user: user, generation: g}, nil, true
	case strings.HasPrefix(payload, prefixUser):
		// Generation unknown: every session must be re-checked.
		user := payload[len(prefixUser):]
		return endEvent{user: user, all: true}, nil, user != ""
	case strings.HasPrefix(payload, prefixEpoch):
		// 0 is no bump's result, and would read as no end at all.
		epoch, err := strconv.ParseUint(payload[len(prefixEpoch):], 10, 64)
		if err != nil || epoch == 0 {
			return endEvent{}, nil, false
		}
		return endEvent{epoch: epoch}, nil, true
	case decodeKey(payload):
		return endEvent{}, &key, true
	}
	return endEvent{}, nil, false
}

func (h *hub) heartbeat(body string) {
	node, sent, ok := strings.Cut(body, ":")
	if !ok {
		return
	}
	if node != h.id {
		now := monotonic()
		h.mu.Lock()
		if _, known := h.peers[node]; !known {
			// Forget nodes gone for a while, so restarts do not pile up.
			for peer, last := range h.peers {
				if last+2*int64(h.lease) < now {
					delete(h.peers, peer)
				}
			}
		}
		h.peers[node] = now
		h.mu.Unlock()
		return
	}
	t, err := strconv.ParseInt(sent, 10, 64)
	if err == nil && h.cache != nil {
		h.cache.renew(t + int64(h.lease))
	}
}

// marker handles the end of a revocation: its own, which fixes the peers
// to wait for, or another node's, which a caching node acknowledges.
func (h *hub) marker(body string) (ack string) {
	node, seqText, ok := strings.Cut(body, ":")
	if !ok {
		return ""
	}
	if node != h.id {
		if h.cache == nil {
			return ""
		}
		return body
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return ""
	}
	now := monotonic()
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.waits[seq]
	if r == nil {
		return ""
	}
	// Every node that could trust its cache now has heartbeats committed
	// before this marker, so heard by now, unless they came before this
	// connection listened: then wait until a lease has passed since.
	// A node silent for a lease does not trust any more.
	r.pending = make(map[string]int64)
	if end := h.since + int64(h.lease) + h.margin(); now < end {
		r.pending[""] = h.since
		r.lapse = end
	}
	for peer, last := range h.peers {
		if last+int64(h.lease)+h.margin() <= now {
			delete(h.peers, peer)
			continue
		}
		r.pending[peer] = last
		r.lapse = max(r.lapse, last+int64(h.lease)+h.margin())
	}
	close(r.heard)
	h.settle(r)
	return ""
}

func (h *hub) ack(body string) {
	acker, list, ok := strings.Cut(body, ":")
	if !ok || acker == "" || acker == h.id {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for item := range strings.SplitSeq(list, ",") {
		node, seqText, ok := strings.Cut(item, ":")
		if !ok || node != h.id {
			continue
		}
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil {
			continue
		}
		if r := h.waits[seq]; r != nil && r.pending != nil {
			delete(r.pending, acker)
			h.settle(r)
		}
	}
}

func (h *hub) left(node string) {
	if node == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.peers, node)
	for _, r := range h.waits {
		if r.pending != nil {
			delete(r.pending, node)
			h.settle(r)
		}
	}
}

// settle finishes r once nobody is left to wait for. h.mu is held.
func (h *hub) settle(r *revocation) {
	if len(r.pending) == 0 && !r.finished {
		r.finished = true
		close(r.done)
	}
}

// begin registers a revocation about to be committed and returns the
// marker to send last in its transaction, or nil when this Store does not
// listen: then it cannot hear acknowledgements, and no caching node can
// exist that it would know of.
func (h *hub) begin() *revocation {
	if h == nil {
		return nil
	}
	seq := h.seq.Add(1)
	r := &revocation{
		seq:    seq,
		marker: prefixMarker + h.id + ":" + strconv.FormatUint(seq, 10),
		heard:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	h.mu.Lock()
	h.waits[seq] = r
	h.mu.Unlock()
	return r
}

// markerPayload is r's marker, "" for none.
func (r *revocation) markerPayload() string {
	if r == nil {
		return ""
	}
	return r.marker
}

// finish waits, after r's transaction committed (or failed, with
// committed false), until no node may serve from its cache what r ended.
// It waits at most a lease: the context is not consulted, so a revocation
// that committed never returns before it holds everywhere.
func (h *hub) finish(r *revocation, committed bool) {
	if r == nil {
		return
	}
	defer func() {
		h.mu.Lock()
		delete(h.waits, r.seq)
		h.mu.Unlock()
	}()
	if !committed {
		return
	}
	limit := time.NewTimer(h.lease + time.Duration(h.margin()))
	defer limit.Stop()
	select {
	case <-r.done:
		return
	case <-r.heard:
		h.mu.Lock()
		lapse := time.Duration(r.lapse - monotonic())
		h.mu.Unlock()
		silent := time.NewTimer(max(lapse, 0))
		defer silent.Stop()
		select {
		case <-r.done:
			return
		case <-silent.C:
		case <-limit.C:
		}
	case <-limit.C:
	}
	h.waitedOut.Add(1)
	h.mu.Lock()
	peers := make([]string, 0, len(r.pending))
	for p := range r.pending {
		peers = append(peers, p)
	}
	h.mu.Unlock()
	h.s.log.Warn("pgstore: a revocation waited out the cache lease: some nodes did not acknowledge it",
		"nodes", peers, "marker_heard", r.pending != nil, "lease", h.lease)
}

// subscribers returns the current subscribers. h.mu is held.
func (h *hub) subscribers() []*subscriber {
	subs := make([]*subscriber, 0, len(h.subs))
	for sub := range h.subs {
		subs = append(subs, sub)
	}
	return subs
}

// publish calls every subscriber with ev.
func (h *hub) publish(ev endEvent) {
	h.mu.Lock()
	subs := h.subscribers()
	h.mu.Unlock()
	for _, sub := range subs {
		sub.fn(ev)
	}
}

// origin is the start of the monotonic readings: the lease must move with
// neither the wall clock nor Config.Now.
var origin = time.Now()

func monotonic() int64 { return int64(time.Since(origin)) }

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
