package redisstore

import (
	"context"
	"time"
)

// A revoking call need not wait a whole lease when every other Store says
// it heard the end. Each Store acknowledges every end message it receives
// (after marking it) by publishing "a", its ID and the message. The
// revoking Store waits until it has received its own end message and, from
// every Store it heard a heartbeat from within the last lease at that
// moment, an acknowledgement of it; or until the lease has passed.
//
// Why that set suffices: a Store still trusting its cache holds a lease
// from a heartbeat round sent less than a lease ago, which went through
// the node that ran the revoking script. If that node ran the heartbeat
// after the script, the Store received the end before the heartbeat came
// back, so before its lease was renewed; if before, the revoking Store,
// listening to the same node, received that heartbeat before its own end
// message, within the last lease, and waits for that Store.

// endState is what a Store knows of one end message.
type endState struct {
	seen    bool             // the message itself was received
	at      time.Duration    // when it or the first acknowledgement was
	waitFor map[[8]byte]bool // peers heard within a lease when it was received
	acked   map[[8]byte]bool // peers that acknowledged it
}

// signal wakes the waiting revocations; w.mu must be held.
func (w *watcher) signal() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *watcher) state(msg string, now time.Duration) *endState {
	st := w.ends[msg]
	if st == nil {
		st = &endState{at: now, acked: make(map[[8]byte]bool)}
		w.ends[msg] = st
	}
	return st
}

// heardPeer records a heartbeat of another Store.
func (w *watcher) heardPeer(id [8]byte) {
	now := w.s.recent.now()
	w.mu.Lock()
	w.peers[id] = now
	w.mu.Unlock()
}

// heardEnd records an end message and queues its acknowledgement.
func (w *watcher) heardEnd(msg string) {
	now := w.s.recent.now()
	w.mu.Lock()
	st := w.state(msg, now)
	st.seen = true
	st.waitFor = make(map[[8]byte]bool, len(w.peers))
	for id, at := range w.peers {
		if now-at <= w.s.cacheLease {
			st.waitFor[id] = true
		} else {
			delete(w.peers, id)
		}
	}
	for m, old := range w.ends {
		if now-old.at > 2*w.s.cacheLease {
			delete(w.ends, m)
		}
	}
	w.signal()
	w.mu.Unlock()
	select {
	case w.acks <- "a" + string(w.id[:]) + msg:
	default: // the revoking Store waits out the lease instead
	}
}

// acked records another Store's acknowledgement of msg.
func (w *watcher) acked(id [8]byte, msg string) {
	if id == w.id {
		return
	}
	w.mu.Lock()
	w.state(msg, w.s.recent.now()).acked[id] = true
	w.signal()
	w.mu.Unlock()
}

// sendAcks publishes the queued acknowledgements until ctx ends.
func (w *watcher) sendAcks(ctx context.Context) {
	s := w.s
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.acks:
			actx, cancel := context.WithTimeout(ctx, s.cacheLease)
			s.client.Do(actx, s.client.B().Publish().Channel(s.endsChannel()).Message(a).Build())
			cancel()
		}
	}
}

// settled reports whether every message in msgs was received and
// acknowledged by every peer it must be; w.mu must be held.
func (w *watcher) settled(msgs []string) bool {
	for _, m := range msgs {
		st := w.ends[m]
		if st == nil || !st.seen {
			return false
		}
		for id := range st.waitFor {
			if !st.acked[id] {
				return false
			}
		}
	}
	return true
}

// awaitRevocation returns once no other Store can still answer from a
// cache that predates the revoking script that just published msgs: when
// they are settled, or a lease after the call.
func (s *Store) awaitRevocation(msgs ...string) {
	if s.cacheTTL <= 0 || len(msgs) == 0 {
		return
	}
	w := s.watcher
	timeout := time.NewTimer(s.cacheLease)
	defer timeout.Stop()
	for {
		w.mu.Lock()
		done, changed := w.settled(msgs), w.changed
		w.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			return
		case <-w.done:
			time.Sleep(s.cacheLease) // no subscription: wait the lease out
			return
		}
	}
}
