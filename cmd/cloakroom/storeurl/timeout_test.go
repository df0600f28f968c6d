package storeurl

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
)

// stalledStore answers nothing until the caller gives up, like a store
// behind a connection that silently stopped answering.
type stalledStore struct{ cloakroom.Store }

func (stalledStore) Find(ctx context.Context, _ cloakroom.Key) (cloakroom.Record, bool, error) {
	<-ctx.Done()
	return cloakroom.Record{}, false, ctx.Err()
}

func TestTimeoutStoreBoundsStalledCalls(t *testing.T) {
	ms := memstore.New(memstore.Config{})
	defer ms.Close()
	s := withTimeout(stalledStore{ms}, 50*time.Millisecond)
	start := time.Now()
	_, found, err := s.Find(context.Background(), cloakroom.Key{1})
	if found || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Find on a stalled store: found=%v err=%v, want a deadline error", found, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Find returned after %v, want about 50ms", took)
	}
	// Calls that answer in time pass through unchanged.
	if _, err := s.BumpGeneration(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if gen, err := s.Generation(context.Background(), "alice"); err != nil || gen != 1 {
		t.Fatalf("Generation = %d, %v; want 1", gen, err)
	}
}

func TestPostgresTimeoutOption(t *testing.T) {
	for raw, want := range map[string]time.Duration{
		"postgres://h/db":               defaultStoreTimeout,
		"postgres://h/db?timeout=750ms": 750 * time.Millisecond,
	} {
		loc, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, set, err := parsePostgres(loc)
		if err != nil || set.timeout != want {
			t.Errorf("%s: timeout %v, %v; want %v", raw, set.timeout, err, want)
		}
	}
	for _, raw := range []string{"postgres://h/db?timeout=1ns", "postgres://h/db?timeout=forever", "postgres://h/db?timeout=1s&timeout=2s"} {
		loc, _ := Parse(raw)
		if _, _, err := parsePostgres(loc); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("%s: err %v, want ErrInvalidURL", raw, err)
		}
	}
}
