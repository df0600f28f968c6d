package memstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
		s := memstore.New(memstore.Config{Now: clock.Now})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSweepDropsExpired(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	s := memstore.New(memstore.Config{Now: clock.Now})
	defer s.Close()
	rec := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	s.Sweep()
	if n := s.Len(); n != 0 {
		t.Fatalf("Len after sweep = %d, want 0", n)
	}
	if list, _ := s.List(context.Background(), "alice"); len(list) != 0 {
		t.Fatalf("List after sweep = %d, want 0", len(list))
	}
}
