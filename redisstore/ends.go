package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

var _ cloakroom.EndNotifier = (*Store)(nil)

// endsChannel is the pub/sub channel on which the scripts announce the
// sessions they end, in the same atomic step as the change, and on which
// each Store sends the heartbeats of its cache lease. In a Redis Cluster a
// PUBLISH reaches the subscribers of every node.
func (s *Store) endsChannel() string { return s.prefix + "ends" }

// Messages on the ends channel: "k" and the 32 bytes of a deleted
// session's key; "g", the new generation, ":" and the user ID after a
// bump; "e" and the new global epoch after an epoch bump; "h", a Store's
// 8-byte ID, the heartbeat's 8-byte sequence number and the address of the
// node it was sent through, or "#" and the epoch for the heartbeat sent
// through the epoch's node; "a", a Store's ID and an end message it
// acknowledges.
func endKeyMessage(key cloakroom.Key) string { return "k" + string(key[:]) }

func bumpMessage(userID string, gen uint64) string {
	return "g" + strconv.FormatUint(gen, 10) + ":" + userID
}

func epochMessage(epoch uint64) string { return "e" + strconv.FormatUint(epoch, 10) }

// epochHeartbeat marks the heartbeat sent through the epoch's node, in a
// round's pending set and in front of the epoch its message carries. Node
// addresses never start with it.
const epochHeartbeat = "#"

func parseEnd(msg string) (cloakroom.End, bool) {
	switch {
	case len(msg) == 1+len(cloakroom.Key{}) && msg[0] == 'k':
		var e cloakroom.End
		copy(e.Key[:], msg[1:])
		return e, true
	case len(msg) > 1 && msg[0] == 'g':
		gen, user, ok := strings.Cut(msg[1:], ":")
		g, err := strconv.ParseUint(gen, 10, 64)
		if ok && err == nil {
			return cloakroom.End{UserID: user, Generation: g}, true
		}
	case len(msg) > 1 && msg[0] == 'e':
		// Epochs start at 0 and a bump announces at least 1.
		if e, err := strconv.ParseUint(msg[1:], 10, 64); err == nil && e > 0 {
			return cloakroom.End{Epoch: e}, true
		}
	}
	return cloakroom.End{}, false
}

// Resubscribing after a broken connection waits between these bounds.
const (
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 2 * time.Second
)

// watcher is a Store's subscription to its ends channel: it turns end
// messages into marks that keep Find away from stale cache entries, fans
// them out to WatchEnds callers, and runs the heartbeats of the cache
// lease (see lease).
type watcher struct {
	s  *Store
	id [8]byte
	// pattern subscribes to the ends channel under a name of this Store's
	// own, so that a confirmation seen by the subscription hook is this
	// Store's, not another's sharing the client and the channel.
	pattern string
	cancel  context.CancelFunc
	done    chan struct{}

	mu        sync.Mutex
	callbacks map[*func(cloakroom.End)]struct{}
	rounds    map[uint64]*heartbeatRound
	seq       uint64

	// subscribed is set while the subscription is confirmed; subscription
	// counts subscriptions, so heartbeats sent under an earlier one never
	// renew the lease.
	subscribed   atomic.Bool
	subscription atomic.Uint64
	// lastBack is when a heartbeat last came back (recent-writes clock);
	// resubscribe ends the current subscription when that is too long ago.
	lastBack    atomic.Int64
	resubscribe context.CancelFunc // guarded by mu

	// For the acknowledgements (see ack.go), guarded by mu: the other
	// Stores heard from within a lease, by ID; what is known of each end
	// message received or acknowledged within two leases; a channel closed
	// and replaced whenever that changes.
	peers   map[[8]byte]time.Duration
	ends    map[string]*endState
	changed chan struct{}
	acks    chan string // acknowledgements to publish
	// kick asks for a heartbeat round now (after a subscription).
	kick chan struct{}
	// started is closed when the lease first starts.
	started     chan struct{}
	startedOnce sync.Once
}

// heartbeatRound is one heartbeat sent through every node.
type heartbeatRound struct {
	sent         time.Duration // recent-writes clock when the round was sent
	subscription uint64
	pending      map[string]bool // node addresses (and epochHeartbeat) whose heartbeat has not come back
}

func (s *Store) startWatcher() {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{
		s:         s,
		cancel:    cancel,
		done:      make(chan struct{}),
		callbacks: make(map[*func(cloakroom.End)]struct{}),
		rounds:    make(map[uint64]*heartbeatRound),
		peers:     make(map[[8]byte]time.Duration),
		ends:      make(map[string]*endState),
		changed:   make(chan struct{}),
		acks:      make(chan string, 4096),
		kick:      make(chan struct{}, 1),
		started:   make(chan struct{}),
	}
	rand.Read(w.id[:])
	w.pattern = ownPattern(s.endsChannel(), w.id)
	s.watcher = w
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.subscribe(ctx)
		cancel() // the client was closed: stop the heartbeats too
	}()
	wg.Add(2)
	go func() { defer wg.Done(); w.heartbeats(ctx) }()
	go func() { defer wg.Done(); w.sendAcks(ctx) }()
	go func() { wg.Wait(); close(w.done) }()
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// WatchEnds implements [cloakroom.EndNotifier] through Redis pub/sub. Once
// the subscription is live for fn, and after it broke and is back, fn gets
// End{All: true}: ends announced before it may have been missed. It
// returns nil when ctx is done.
func (s *Store) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	w := s.watcher
	p := &fn
	w.mu.Lock()
	w.callbacks[p] = struct{}{}
	// The Store subscribes when it is made: a caller coming later was not
	// there for that subscription's All. Under the lock, so it comes
	// before any end received after. Not subscribed yet, the
	// subscription's own All reaches fn.
	if w.subscribed.Load() {
		fn(cloakroom.End{All: true})
	}
	w.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-w.done:
	}
	w.mu.Lock()
	delete(w.callbacks, p)
	w.mu.Unlock()
	return nil
}

// publish hands e to every WatchEnds caller.
func (w *watcher) publish(e cloakroom.End) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for fn := range w.callbacks {
		(*fn)(e)
	}
}

// subscribe keeps the subscription to the ends channel until ctx ends or
// the client is closed.
func (w *watcher) subscribe(ctx context.Context) {
	s := w.s
	hooked := rueidis.WithOnSubscriptionHook(ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind != "psubscribe" || sub.Channel != w.pattern {
			return
		}
		// A new subscription: heartbeats sent before it do not count. After
		// the first, whatever was published in between may have been
		// missed, and cache entries may predate those ends: the cache is
		// not trusted again until they expire.
		w.subscription.Add(1)
		w.lastBack.Store(int64(w.s.recent.now()))
		select {
		case w.kick <- struct{}{}:
		default:
		}
		if w.subscribed.Swap(true) {
			w.s.lease.block(w.s.recent.now(), w.s.cacheTTL)
		}
		// Every subscription, the first included, may follow ends that
		// WatchEnds callers registered earlier never heard of: have them
		// re-check what they watch.
		w.publish(cloakroom.End{All: true})
	})
	wait := resubscribeMin
	for {
		attempt, cancel := context.WithCancel(hooked)
		w.mu.Lock()
		w.resubscribe = cancel
		w.mu.Unlock()
		err := s.client.Receive(attempt, s.client.B().Psubscribe().Pattern(w.pattern).Build(), w.receive)
		cancel()
		if ctx.Err() != nil || errors.Is(err, rueidis.ErrClosing) {
			return
		}
		if err == nil {
			wait = resubscribeMin // unsubscribed by someone else: subscribe again at once
		}
		if w.subscribed.Load() {
			// Whatever is published until the next subscription is lost;
			// say so now too, in case that takes long.
			w.publish(cloakroom.End{All: true})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, resubscribeMax)
	}
}

// receive handles one message of the ends channel. It runs on rueidis'
// connection goroutine, so it only updates memory.
func (w *watcher) receive(m rueidis.PubSubMessage) {
	msg := m.Message
	if len(msg) > 17 && msg[0] == 'h' {
		if msg[1:9] == string(w.id[:]) {
			w.heartbeatBack(binary.BigEndian.Uint64([]byte(msg[9:17])), msg[17:])
		} else {
			w.heardPeer([8]byte([]byte(msg[1:9])))
		}
		return
	}
	if len(msg) > 9 && msg[0] == 'a' {
		w.acked([8]byte([]byte(msg[1:9])), msg[9:])
		return
	}
	e, ok := parseEnd(msg)
	if !ok {
		return
	}
	// Until every stale cache entry has expired, Find asks Redis about
	// this session or user, whatever the cache says.
	s := w.s
	switch {
	case e.Epoch != 0:
		s.raiseEpoch(e.Epoch)
	case e.UserID != "":
		s.recent.markUserFor(e.UserID, true, e.Generation, max(s.cacheTTL, readYourWritesWindow))
	default:
		s.found.forget(e.Key)
		s.recent.markSessionFor(e.Key, wroteDeletion, "", max(s.cacheTTL, readYourWritesWindow))
	}
	w.heardEnd(msg)
	w.publish(e)
}

// ownPattern is a glob pattern that matches exactly channel, told apart
// from other Stores' by id: the last byte becomes a character class that
// also lists id's letters.
func ownPattern(channel string, id [8]byte) string {
	var b strings.Builder
	for _, c := range channel[:len(channel)-1] {
		if strings.ContainsRune(`*?[]\^-`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	b.WriteByte('[')
	b.WriteByte(channel[len(channel)-1])
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for _, x := range id {
		b.WriteByte(letters[int(x)%len(letters)])
	}
	b.WriteByte(']')
	return b.String()
}
