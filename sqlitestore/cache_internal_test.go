package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/storetest"
)

// frozenHeader is a header that never changes, as a mapping of a replaced
// -shm file would be.
type frozenHeader struct{ hdr walHeader }

func (f frozenHeader) read() (walHeader, error) { return f.hdr, nil }
func (frozenHeader) close() error               { return nil }

// TestCacheStopsOnStaleHeader: if the header stops following commits, the
// first write of the store's own that changes a row notices it, and the
// cache never serves again, so another store's revocation is still seen.
func TestCacheStopsOnStaleHeader(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := Open(ctx, path, Config{DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	victim := storetest.NewRecord("alice", time.Now())
	if err := s.Commit(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Find(ctx, victim.Key); err != nil || !ok {
		t.Fatalf("Find: %v %v", ok, err)
	}
	var broken []string
	s.cache.onBroken = func(reason string) { broken = append(broken, reason) }
	hdr, err := s.header.read()
	if err != nil {
		t.Fatal(err)
	}
	real := s.header.view
	s.header.view = frozenHeader{hdr}
	defer func() { s.header.view = real }()

	if err := s.Commit(ctx, storetest.NewRecord("bob", time.Now())); err != nil {
		t.Fatal(err)
	}
	if len(broken) != 1 {
		t.Fatalf("cache reported breaking %d times, want once", len(broken))
	}
	if err := other.Delete(ctx, victim.Key); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Find(ctx, victim.Key); err != nil || ok {
		t.Fatalf("Find after another store's delete, header frozen: found=%v err=%v", ok, err)
	}
	fresh := storetest.NewRecord("carol", time.Now())
	if err := s.Commit(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, ok, err := s.Find(ctx, fresh.Key); err != nil || !ok {
			t.Fatalf("Find: %v %v", ok, err)
		}
	}
	if n := len(s.cache.entries); n != 0 {
		t.Fatalf("a broken cache holds %d sessions", n)
	}
}
