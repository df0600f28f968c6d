package cloakroom

import (
	"context"
	"sync"
	"time"
)

// Watch returns a context that is cancelled when the request's session
// ends: a logout, a revocation by handle, of the others or of all, a
// generation bump (account disabled, deleted, password or roles changed)
// or expiry, made by this process or, through the store's [EndNotifier],
// by any other. As a backstop against a missed notification, every watched
// session is re-checked against the store every Config.RecheckInterval; a
// store error during that check ends the watch (fail closed).
//
// A request's own response ends with the request; Watch is for what
// outlives one response: a streaming response, a WebSocket or another
// upgraded connection. Close the connection when the context is done, and
// call the returned CancelFunc when it ends. Without a live session the
// context is already cancelled.
func (s *Session) Watch(ctx context.Context) (context.Context, context.CancelFunc) {
	s.mu.Lock()
	live, rec := s.live, s.rec
	s.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	if !live {
		cancel()
		return wctx, cancel
	}
	w := &watched{key: rec.Key, userID: rec.UserID, generation: rec.Generation, epoch: rec.Epoch, cancel: cancel}
	if !s.m.watches.add(w, rec.Expiry()) {
		cancel()
		return wctx, cancel
	}
	return wctx, func() {
		s.m.watches.remove(w)
		cancel()
	}
}

// watched is one held-open use of a session.
type watched struct {
	key        Key
	userID     string
	generation uint64
	epoch      uint64
	cancel     context.CancelFunc
	expiry     *time.Timer // re-checks the session when it would expire
}

// watchHub ends watched sessions. Its goroutines (the store's notification
// stream and the periodic re-check) start with the first watch and stop at
// Manager.Close.
type watchHub struct {
	m *Manager

	mu      sync.Mutex
	byKey   map[Key]map[*watched]struct{}
	byUser  map[string]map[*watched]struct{}
	started bool
	closed  bool
	stop    context.CancelFunc
	done    sync.WaitGroup
	recheck chan struct{} // asks the re-check loop to run now
}

func newWatchHub(m *Manager) *watchHub {
	return &watchHub{
		m:       m,
		byKey:   make(map[Key]map[*watched]struct{}),
		byUser:  make(map[string]map[*watched]struct{}),
		recheck: make(chan struct{}, 1),
	}
}

func (h *watchHub) add(w *watched, expiry time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if !h.started {
		h.started = true
		ctx, stop := context.WithCancel(context.Background())
		h.stop = stop
		h.done.Add(1)
		go h.recheckLoop(ctx)
		if n, ok := h.m.store.(EndNotifier); ok {
			h.done.Add(1)
			go h.notifyLoop(ctx, n)
		}
	}
	set := h.byKey[w.key]
	if set == nil {
		set = make(map[*watched]struct{})
		h.byKey[w.key] = set
	}
	set[w] = struct{}{}
	if w.userID != "" {
		us := h.byUser[w.userID]
		if us == nil {
			us = make(map[*watched]struct{})
			h.byUser[w.userID] = us
		}
		us[w] = struct{}{}
	}
	h.scheduleExpiryLocked(w, expiry)
	// The session may have ended between the request's load and now, before
	// this watch could hear of it: confirm it once, after registering, so
	// an end is either seen here or notified to the watch.
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		h.checkOne(w)
	}()
	return true
}

// scheduleExpiryLocked re-checks w's session when it would expire; another
// request may have extended it meanwhile, so expiry is confirmed by the
// store, never assumed.
func (h *watchHub) scheduleExpiryLocked(w *watched, expiry time.Time) {
	d := expiry.Sub(h.m.now())
	if d <= 0 {
		d = h.m.cfg.RecheckInterval
	}
	if w.expiry != nil {
		w.expiry.Stop()
	}
	w.expiry = time.AfterFunc(d, func() { h.checkOne(w) })
}

func (h *watchHub) checkOne(w *watched) {
	h.mu.Lock()
	_, still := h.byKey[w.key][w]
	h.mu.Unlock()
	if !still {
		return
	}
	rec, live := h.confirm(context.Background(), w.key, w.generation)
	if !live {
		h.endKey(w.key)
		return
	}
	h.mu.Lock()
	if _, still := h.byKey[w.key][w]; still {
		h.scheduleExpiryLocked(w, rec.Expiry())
	}
	h.mu.Unlock()
}

func (h *watchHub) remove(w *watched) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(w)
}

func (h *watchHub) removeLocked(w *watched) {
	if w.expiry != nil {
		w.expiry.Stop()
	}
	if set := h.byKey[w.key]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.byKey, w.key)
		}
	}
	if set := h.byUser[w.userID]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.byUser, w.userID)
		}
	}
}

// endKey ends every watch of the session stored under key.
func (h *watchHub) endKey(key Key) {
	h.mu.Lock()
	h.endLocked(h.byKey[key], func(*watched) bool { return true })
}

// endUser ends every watch of userID's sessions below generation.
func (h *watchHub) endUser(userID string, generation uint64) {
	if userID == "" {
		return
	}
	h.mu.Lock()
	h.endLocked(h.byUser[userID], func(w *watched) bool { return w.generation < generation })
}

// endEpoch ends every watch of a session created below epoch.
func (h *watchHub) endEpoch(epoch uint64) {
	h.mu.Lock()
	var all map[*watched]struct{}
	for _, set := range h.byKey {
		for w := range set {
			if w.epoch < epoch {
				if all == nil {
					all = make(map[*watched]struct{})
				}
				all[w] = struct{}{}
			}
		}
	}
	h.endLocked(all, func(*watched) bool { return true })
}

// endLocked removes the watches of set that match, unlocks the hub, and
// then cancels them, so no lock is held while their contexts end.
func (h *watchHub) endLocked(set map[*watched]struct{}, match func(*watched) bool) {
	var ended []*watched
	for w := range set {
		if match(w) {
			ended = append(ended, w)
		}
	}
	for _, w := range ended {
		h.removeLocked(w)
	}
	h.mu.Unlock()
	for _, w := range ended {
		w.cancel()
	}
}

func (h *watchHub) onEnd(e End) {
	switch {
	case e.All:
		select {
		case h.recheck <- struct{}{}:
		default:
		}
	case e.Epoch != 0:
		h.endEpoch(e.Epoch)
	case e.UserID != "":
		h.endUser(e.UserID, e.Generation)
	default:
		h.endKey(e.Key)
	}
}

// notifyLoop follows the store's notifications until the hub stops. The
// store reports End{All: true} once its subscription is live, so what was
// watched before (an end made meanwhile reached nobody) is re-checked
// then. If the stream breaks, everything watched is re-checked, then it
// is resumed.
func (h *watchHub) notifyLoop(ctx context.Context, n EndNotifier) {
	defer h.done.Done()
	for {
		err := n.WatchEnds(ctx, h.onEnd)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			h.m.logger.WarnContext(ctx, "session end notifications interrupted", "err", err)
		}
		h.onEnd(End{All: true})
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// recheckLoop confirms every watched session against the store each
// RecheckInterval, and at once when asked.
func (h *watchHub) recheckLoop(ctx context.Context) {
	defer h.done.Done()
	t := time.NewTicker(h.m.cfg.RecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.recheck:
		}
		h.recheckAll(ctx)
	}
}

func (h *watchHub) recheckAll(ctx context.Context) {
	h.mu.Lock()
	keys := make(map[Key]uint64, len(h.byKey))
	for k, set := range h.byKey {
		for w := range set {
			keys[k] = w.generation
			break
		}
	}
	h.mu.Unlock()
	for k, gen := range keys {
		_, live := h.confirm(ctx, k, gen)
		if ctx.Err() != nil {
			return
		}
		if !live {
			h.endKey(k)
		}
	}
}

// confirm asks the store whether the session under key still lives with
// generation; a store error counts as ended (fail closed).
func (h *watchHub) confirm(ctx context.Context, key Key, generation uint64) (Record, bool) {
	ctx, cancel := context.WithTimeout(ctx, h.m.cfg.RecheckInterval)
	defer cancel()
	rec, found, err := h.m.store.Find(ctx, key)
	live := err == nil && found && !rec.Expired(h.m.now()) && rec.Generation == generation
	return rec, live
}

// close stops the hub's goroutines and ends every watch.
func (h *watchHub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	stop := h.stop
	var all []*watched
	for _, set := range h.byKey {
		for w := range set {
			all = append(all, w)
		}
	}
	for _, w := range all {
		h.removeLocked(w)
	}
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	h.done.Wait()
	for _, w := range all {
		w.cancel()
	}
}
