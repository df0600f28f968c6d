package storeurl

import (
	"context"
	"time"

	"github.com/cloakroom/cloakroom"
)

// defaultStoreTimeout bounds each call to a network session store. Request
// contexts carry no deadline, and a connection that silently stopped
// answering (no reset, no FIN) would otherwise hold a request until TCP
// gives up, minutes later. After the timeout the call fails, and the
// request fails closed with a 503.
const defaultStoreTimeout = 5 * time.Second

// timeoutStore gives every call to the wrapped store a deadline. It passes
// the store's end notifications through, so the gateway on Postgres hears
// of ends made on other nodes.
type timeoutStore struct {
	store   cloakroom.Store
	timeout time.Duration
}

func withTimeout(s cloakroom.Store, d time.Duration) *timeoutStore {
	return &timeoutStore{store: s, timeout: d}
}

func (s *timeoutStore) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Find(ctx, key)
}

func (s *timeoutStore) Commit(ctx context.Context, rec cloakroom.Record) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Commit(ctx, rec)
}

func (s *timeoutStore) Delete(ctx context.Context, key cloakroom.Key) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Delete(ctx, key)
}

func (s *timeoutStore) List(ctx context.Context, userID string) ([]cloakroom.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.List(ctx, userID)
}

func (s *timeoutStore) Generation(ctx context.Context, userID string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Generation(ctx, userID)
}

func (s *timeoutStore) BumpGeneration(ctx context.Context, userID string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.BumpGeneration(ctx, userID)
}

func (s *timeoutStore) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Rotate(ctx, r)
}

func (s *timeoutStore) Epoch(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Epoch(ctx)
}

func (s *timeoutStore) BumpEpoch(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.BumpEpoch(ctx)
}

func (s *timeoutStore) FindAux(ctx context.Context, key cloakroom.Key) (cloakroom.AuxRecord, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.FindAux(ctx, key)
}

func (s *timeoutStore) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.CommitAux(ctx, rec)
}

func (s *timeoutStore) DeleteAux(ctx context.Context, key cloakroom.Key) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.DeleteAux(ctx, key)
}

// WatchEnds passes the wrapped store's end notifications through, without
// a deadline: the subscription lives until ctx ends. A store that cannot
// notify leaves the manager to its periodic re-check.
func (s *timeoutStore) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	n, ok := s.store.(cloakroom.EndNotifier)
	if !ok {
		<-ctx.Done()
		return nil
	}
	return n.WatchEnds(ctx, fn)
}

// Unwrap returns the wrapped store.
func (s *timeoutStore) Unwrap() cloakroom.Store { return s.store }

// Ping reports the wrapped store's health, within the same bound.
func (s *timeoutStore) Ping(ctx context.Context) error {
	p, ok := s.store.(cloakroom.Pinger)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return p.Ping(ctx)
}

var _ cloakroom.EndNotifier = (*timeoutStore)(nil)
