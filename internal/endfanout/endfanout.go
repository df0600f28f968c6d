// Package endfanout hands the session ends of an in-process store to the
// store's WatchEnds subscribers ([cloakroom.EndNotifier]). memstore and
// sqlitestore use it: every end they report is made in the process that
// watches, so they need no more than a set of callbacks.
package endfanout

import (
	"sync"

	"github.com/cloakroom/cloakroom"
)

// Fanout is a store's set of subscribers. Use New.
type Fanout struct {
	mu      sync.Mutex
	subs    map[*func(cloakroom.End)]struct{}
	closed  bool
	closing chan struct{}
	active  sync.WaitGroup // subscriptions not yet cancelled
}

// New returns a Fanout with no subscribers.
func New() *Fanout {
	return &Fanout{subs: make(map[*func(cloakroom.End)]struct{}), closing: make(chan struct{})}
}

// Subscribe adds fn, which Publish calls until cancel is called. Before
// it returns, and before any end published after it, fn gets End{All:
// true}, as the [cloakroom.EndNotifier] contract wants once a subscription
// is live: ends published before were not reported to fn, and its caller
// may watch sessions they ended. Once Close has begun it adds nothing and
// returns ok false.
func (f *Fanout) Subscribe(fn func(cloakroom.End)) (cancel func(), ok bool) {
	p := &fn
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	f.subs[p] = struct{}{}
	f.active.Add(1)
	fn(cloakroom.End{All: true}) // under the lock: before any later Publish
	return sync.OnceFunc(func() {
		f.mu.Lock()
		delete(f.subs, p)
		f.mu.Unlock()
		f.active.Done()
	}), true
}

// Publish calls every subscriber with e. It holds the Fanout's lock
// meanwhile, so each subscriber sees ends in the order they were
// published; a subscriber must not block, nor call back into the Fanout.
func (f *Fanout) Publish(e cloakroom.End) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fn := range f.subs {
		(*fn)(e)
	}
}

// Closing is closed when Close begins: a WatchEnds blocked on it returns
// and cancels its subscription.
func (f *Fanout) Closing() <-chan struct{} { return f.closing }

// Close refuses new subscribers, closes Closing and waits until every
// subscription has been cancelled. It may be called more than once.
func (f *Fanout) Close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.closing)
	}
	f.mu.Unlock()
	f.active.Wait()
}
