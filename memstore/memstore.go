// Package memstore is an in-memory [cloakroom.Store] for tests, development
// and single-process apps. Sessions live in a sharded map and vanish when the
// process exits; a background sweep drops expired sessions until Close.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/endfanout"
)

const shardCount = 64

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// Now is the store's clock. Default: time.Now.
	Now func() time.Time
	// SweepInterval is how often expired sessions are dropped. Default: one
	// minute. Expired sessions are never returned, swept or not.
	SweepInterval time.Duration
}

// Store keeps sessions in process memory. It is safe for concurrent use.
type Store struct {
	now    func() time.Time
	shards [shardCount]shard

	// writeMu serialises every write, so Rotate's check and act are one
	// step with respect to Commit, Delete and BumpGeneration. Reads take
	// only the shard and user locks.
	writeMu sync.Mutex

	usersMu sync.RWMutex
	gens    map[string]uint64                     // user → generation
	byUser  map[string]map[cloakroom.Key]struct{} // user → keys of their sessions

	// epoch is the global epoch; written under writeMu, read without it.
	epoch atomic.Uint64

	auxMu sync.Mutex
	aux   map[cloakroom.Key]*cloakroom.AuxRecord

	ends *endfanout.Fanout

	stop     chan struct{}
	stopOnce sync.Once
	swept    sync.WaitGroup
}

type shard struct {
	mu       sync.RWMutex
	sessions map[cloakroom.Key]*cloakroom.Record
}

// New returns an empty store and starts its expiry sweep.
func New(cfg Config) *Store {
	s := &Store{
		now:    cfg.Now,
		gens:   make(map[string]uint64),
		byUser: make(map[string]map[cloakroom.Key]struct{}),
		aux:    make(map[cloakroom.Key]*cloakroom.AuxRecord),
		ends:   endfanout.New(),
		stop:   make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for i := range s.shards {
		s.shards[i].sessions = make(map[cloakroom.Key]*cloakroom.Record)
	}
	interval := cfg.SweepInterval
	if interval <= 0 {
		interval = time.Minute
	}
	s.swept.Add(1)
	go s.sweepLoop(interval)
	return s
}

// Close stops the expiry sweep. The store stays readable.
func (s *Store) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.swept.Wait()
	return nil
}

func (s *Store) shardFor(k cloakroom.Key) *shard { return &s.shards[k[0]%shardCount] }

func (s *Store) generation(user string) uint64 {
	s.usersMu.RLock()
	g := s.gens[user]
	s.usersMu.RUnlock()
	return g
}

func (s *Store) live(rec *cloakroom.Record, now time.Time) bool {
	if rec.Expired(now) || rec.Epoch < s.epoch.Load() {
		return false
	}
	return rec.UserID == "" || rec.Generation >= s.generation(rec.UserID)
}

// Find implements [cloakroom.Store].
func (s *Store) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	sh := s.shardFor(key)
	sh.mu.RLock()
	rec, ok := sh.sessions[key]
	sh.mu.RUnlock()
	if !ok || !s.live(rec, s.now()) {
		return cloakroom.Record{}, false, nil
	}
	return *rec, true, nil
}

// Commit implements [cloakroom.Store].
func (s *Store) Commit(ctx context.Context, rec cloakroom.Record) error {
	if err := checkCommit(ctx, rec.Key.Short(), rec.Version); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.commitLocked(rec, s.now())
}

// commitLocked is Commit with writeMu held.
func (s *Store) commitLocked(rec cloakroom.Record, now time.Time) error {
	sh := s.shardFor(rec.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if rec.Epoch < s.epoch.Load() || rec.UserID != "" && rec.Generation < s.generation(rec.UserID) {
		return fmt.Errorf("memstore: commit of revoked session %s: %w", rec.Key.Short(), cloakroom.ErrNotFound)
	}
	var liveVersion uint64 // 0 for none
	old, exists := sh.sessions[rec.Key]
	if exists && !s.live(old, now) {
		s.remove(sh, old)
		exists = false
	} else if exists {
		liveVersion = old.Version
	}
	if err := versionRefusal(rec.Key.Short(), rec.Version, liveVersion); err != nil {
		return err
	}
	stored := rec
	// Clipped so a caller appending to a found record's Data reallocates
	// instead of writing into the stored array; Find shares it uncopied.
	stored.Data = slices.Clip(append([]byte(nil), rec.Data...))
	sh.sessions[rec.Key] = &stored
	if rec.UserID != "" && !exists {
		s.usersMu.Lock()
		keys := s.byUser[rec.UserID]
		if keys == nil {
			keys = make(map[cloakroom.Key]struct{})
			s.byUser[rec.UserID] = keys
		}
		keys[rec.Key] = struct{}{}
		s.usersMu.Unlock()
	}
	return nil
}

// checkCommit refuses a commit of what, the session or record being
// written, at version 0 or under a done context.
func checkCommit(ctx context.Context, what string, version uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if version == 0 {
		return fmt.Errorf("memstore: commit %s: version 0 is not a valid version", what)
	}
	return nil
}

// versionRefusal explains why what, a session or a record, cannot be
// written at version over the live one at version stored (0 for none), or
// returns nil when it can: version 1 creates, a later one updates its
// predecessor.
func versionRefusal(what string, version, stored uint64) error {
	switch {
	case version == 1 && stored != 0:
		return fmt.Errorf("memstore: create %s: %w", what, cloakroom.ErrConflict)
	case version > 1 && stored == 0:
		return fmt.Errorf("memstore: update %s: %w", what, cloakroom.ErrNotFound)
	case version > 1 && stored != version-1:
		return fmt.Errorf("memstore: update %s from version %d, stored %d: %w", what, version-1, stored, cloakroom.ErrConflict)
	}
	return nil
}

// remove deletes rec from its shard and the user index; sh must be locked.
func (s *Store) remove(sh *shard, rec *cloakroom.Record) {
	delete(sh.sessions, rec.Key)
	if rec.UserID == "" {
		return
	}
	s.usersMu.Lock()
	if keys := s.byUser[rec.UserID]; keys != nil {
		delete(keys, rec.Key)
		if len(keys) == 0 {
			delete(s.byUser, rec.UserID)
		}
	}
	s.usersMu.Unlock()
}

// Delete implements [cloakroom.Store].
func (s *Store) Delete(ctx context.Context, key cloakroom.Key) error {
	s.writeMu.Lock()
	deleted := s.deleteLocked(key)
	s.writeMu.Unlock()
	if deleted {
		s.ends.Publish(cloakroom.End{Key: key})
	}
	return nil
}

// deleteLocked removes the session under key, with writeMu held, and
// reports whether there was one.
func (s *Store) deleteLocked(key cloakroom.Key) bool {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.sessions[key]
	if ok {
		s.remove(sh, rec)
	}
	return ok
}

// List implements [cloakroom.Store].
func (s *Store) List(ctx context.Context, userID string) ([]cloakroom.Record, error) {
	if userID == "" {
		return nil, nil
	}
	s.usersMu.RLock()
	keys := make([]cloakroom.Key, 0, len(s.byUser[userID]))
	for k := range s.byUser[userID] {
		keys = append(keys, k)
	}
	s.usersMu.RUnlock()
	now := s.now()
	var out []cloakroom.Record
	for _, k := range keys {
		sh := s.shardFor(k)
		sh.mu.RLock()
		rec, ok := sh.sessions[k]
		var cp cloakroom.Record
		if ok {
			cp = *rec
		}
		sh.mu.RUnlock()
		if ok && s.live(&cp, now) {
			out = append(out, cp)
		}
	}
	return out, nil
}

// Generation implements [cloakroom.Store].
func (s *Store) Generation(ctx context.Context, userID string) (uint64, error) {
	return s.generation(userID), nil
}

// BumpGeneration implements [cloakroom.Store]. It also deletes the user's
// sessions, which the new generation has made unreachable anyway.
func (s *Store) BumpGeneration(ctx context.Context, userID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.writeMu.Lock()
	gen := s.bumpLocked(userID)
	s.writeMu.Unlock()
	s.ends.Publish(cloakroom.End{UserID: userID, Generation: gen})
	return gen, nil
}

// bumpLocked increments userID's generation and drops the user's sessions,
// with writeMu held.
func (s *Store) bumpLocked(userID string) uint64 {
	s.usersMu.Lock()
	s.gens[userID]++
	gen := s.gens[userID]
	keys := s.byUser[userID]
	delete(s.byUser, userID)
	s.usersMu.Unlock()
	for k := range keys {
		sh := s.shardFor(k)
		sh.mu.Lock()
		if rec, ok := sh.sessions[k]; ok && rec.UserID == userID && rec.Generation < gen {
			delete(sh.sessions, k)
		}
		sh.mu.Unlock()
	}
	return gen
}

// Epoch implements [cloakroom.Store].
func (s *Store) Epoch(ctx context.Context) (uint64, error) {
	return s.epoch.Load(), nil
}

// BumpEpoch implements [cloakroom.Store]. It also drops every session and
// every auxiliary record that ends with the sessions, which the new epoch
// has made unreachable anyway.
func (s *Store) BumpEpoch(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.writeMu.Lock()
	epoch := s.epoch.Add(1)
	s.writeMu.Unlock()
	s.ends.Publish(cloakroom.End{Epoch: epoch})
	s.Sweep()
	return epoch, nil
}

// Rotate implements [cloakroom.Rotator]: under the store's write lock it
// checks the old session and the user's generation, bumps, creates the new
// session and deletes the old one.
func (s *Store) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	if err := ctx.Err(); err != nil {
		return cloakroom.Record{}, err
	}
	if err := r.Check(); err != nil {
		return cloakroom.Record{}, fmt.Errorf("memstore: rotate %s to %s: %w", r.Old.Short(), r.New.Key.Short(), err)
	}
	var zero cloakroom.Key
	s.writeMu.Lock()
	now := s.now()
	if r.OldMustLive {
		sh := s.shardFor(r.Old)
		sh.mu.RLock()
		old, ok := sh.sessions[r.Old]
		alive := ok && s.live(old, now) && old.Epoch == s.epoch.Load() && (old.UserID == "" || old.Generation == s.generation(old.UserID))
		var version uint64
		if ok {
			version = old.Version
		}
		sh.mu.RUnlock()
		if !alive {
			s.writeMu.Unlock()
			return cloakroom.Record{}, fmt.Errorf("memstore: rotate %s: old session is gone: %w", r.Old.Short(), cloakroom.ErrNotFound)
		}
		if r.OldVersion != 0 && version != r.OldVersion {
			s.writeMu.Unlock()
			return cloakroom.Record{}, fmt.Errorf("memstore: rotate %s: old session is at version %d, not %d: %w", r.Old.Short(), version, r.OldVersion, cloakroom.ErrConflict)
		}
	}
	rec := r.New
	if rec.Epoch < s.epoch.Load() {
		s.writeMu.Unlock()
		return cloakroom.Record{}, fmt.Errorf("memstore: rotate to %s: epoch %d is below the current one: %w", rec.Key.Short(), rec.Epoch, cloakroom.ErrNotFound)
	}
	if rec.UserID != "" && rec.Generation != s.generation(rec.UserID) {
		s.writeMu.Unlock()
		return cloakroom.Record{}, fmt.Errorf("memstore: rotate to %s: generation %d is not the user's current one: %w", rec.Key.Short(), rec.Generation, cloakroom.ErrNotFound)
	}
	sh := s.shardFor(rec.Key)
	sh.mu.RLock()
	_, taken := sh.sessions[rec.Key]
	sh.mu.RUnlock()
	if taken {
		s.writeMu.Unlock()
		return cloakroom.Record{}, fmt.Errorf("memstore: rotate to %s: %w", rec.Key.Short(), cloakroom.ErrConflict)
	}
	var ends []cloakroom.End
	if r.Bump {
		rec.Generation = s.bumpLocked(rec.UserID)
		ends = append(ends, cloakroom.End{UserID: rec.UserID, Generation: rec.Generation})
	}
	if err := s.commitLocked(rec, now); err != nil {
		s.writeMu.Unlock()
		return cloakroom.Record{}, err
	}
	if r.Old != zero && s.deleteLocked(r.Old) {
		ends = append(ends, cloakroom.End{Key: r.Old})
	}
	s.writeMu.Unlock()
	for _, e := range ends {
		s.ends.Publish(e)
	}
	return rec, nil
}

// FindAux implements [cloakroom.AuxStore].
func (s *Store) FindAux(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	s.auxMu.Lock()
	defer s.auxMu.Unlock()
	rec, ok := s.aux[key]
	if !ok || !s.auxLive(rec, s.now()) {
		return cloakroom.AuxRecord{}, false, nil
	}
	return *rec, true, nil
}

func (s *Store) auxLive(rec *cloakroom.AuxRecord, now time.Time) bool {
	return !rec.Expired(now) && (!rec.EndsWithSessions || rec.Epoch >= s.epoch.Load())
}

// CommitAux implements [cloakroom.AuxStore].
func (s *Store) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	what := "record " + rec.Key.Short()
	if err := checkCommit(ctx, what, rec.Version); err != nil {
		return err
	}
	// writeMu orders the epoch check before a concurrent BumpEpoch.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.auxMu.Lock()
	defer s.auxMu.Unlock()
	now := s.now()
	if rec.EndsWithSessions && rec.Epoch < s.epoch.Load() {
		return fmt.Errorf("memstore: commit record %s of a past epoch: %w", rec.Key.Short(), cloakroom.ErrNotFound)
	}
	var liveVersion uint64 // 0 for none
	if old, ok := s.aux[rec.Key]; ok && !s.auxLive(old, now) {
		delete(s.aux, rec.Key)
	} else if ok {
		liveVersion = old.Version
	}
	if err := versionRefusal(what, rec.Version, liveVersion); err != nil {
		return err
	}
	if !now.Before(rec.Expires) {
		return fmt.Errorf("memstore: commit %s: it expires at %v, not after now: %w", what, rec.Expires, cloakroom.ErrInvalidInput)
	}
	stored := rec
	stored.Data = slices.Clip(append([]byte(nil), rec.Data...))
	s.aux[rec.Key] = &stored
	return nil
}

// DeleteAux implements [cloakroom.AuxStore].
func (s *Store) DeleteAux(ctx context.Context, key cloakroom.Key) error {
	s.auxMu.Lock()
	delete(s.aux, key)
	s.auxMu.Unlock()
	return nil
}

// WatchEnds implements [cloakroom.EndNotifier] for the managers sharing
// this store in one process. It first reports End{All: true}, once
// subscribed.
func (s *Store) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	cancel, _ := s.ends.Subscribe(fn) // never closed
	defer cancel()
	<-ctx.Done()
	return nil
}

// Len returns the number of stored sessions, expired ones not yet swept
// included. It is meant for tests and metrics.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.RLock()
		n += len(s.shards[i].sessions)
		s.shards[i].mu.RUnlock()
	}
	return n
}

// AuxLen returns the number of stored auxiliary records, expired ones not
// yet swept included. It is meant for tests.
func (s *Store) AuxLen() int {
	s.auxMu.Lock()
	defer s.auxMu.Unlock()
	return len(s.aux)
}

func (s *Store) sweepLoop(interval time.Duration) {
	defer s.swept.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep drops every expired or revoked session and auxiliary record now.
// The background loop calls it; tests may too.
func (s *Store) Sweep() {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	now := s.now()
	s.auxMu.Lock()
	for k, rec := range s.aux {
		if !s.auxLive(rec, now) {
			delete(s.aux, k)
		}
	}
	s.auxMu.Unlock()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, rec := range sh.sessions {
			if !s.live(rec, now) {
				s.remove(sh, rec)
			}
		}
		sh.mu.Unlock()
	}
}
