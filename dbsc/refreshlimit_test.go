package dbsc_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/internal/ratelimit"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

// countingAux is a memory store that counts the auxiliary records written.
type countingAux struct {
	*memstore.Store
	writes atomic.Int64
}

func (s *countingAux) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	s.writes.Add(1)
	return s.Store.CommitAux(ctx, rec)
}

// newCountingApp is newApp on a memory store that counts auxiliary writes.
func newCountingApp(t *testing.T) (*app, *countingAux) {
	var store *countingAux
	a := newApp(t, storeCase{"counting", func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
		store = &countingAux{Store: memstore.New(memstore.Config{Now: clock.Now})}
		t.Cleanup(func() { store.Close() })
		return store
	}}, nil)
	return a, store
}

// A copied cookie jar (or a script) posting refreshes without a proof as
// fast as it can gets a fresh challenge, one auxiliary record written,
// only within the session's budget; past it, 503 with Retry-After (a 4xx
// would make Chromium drop the session) and nothing written. The budget
// comes back with time.
func TestRefreshFloodIsBounded(t *testing.T) {
	a, store := newCountingApp(t)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	ctx := context.Background()
	const flood = 500
	before := store.writes.Load()
	challenged, throttled := 0, 0
	retryAfter := ""
	for range flood {
		r, err := c.RefreshWith(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		switch r.Status {
		case http.StatusForbidden:
			challenged++
		case http.StatusServiceUnavailable:
			throttled++
			retryAfter = r.Header.Get("Retry-After")
			if r.Header.Get(dbsc.HeaderChallenge) != "" {
				t.Fatal("a throttled refresh carries a challenge")
			}
		default:
			t.Fatalf("refresh without a proof: %d %s", r.Status, r.Body)
		}
	}
	written := store.writes.Load() - before
	if written != int64(challenged) {
		t.Fatalf("%d records written for %d challenges", written, challenged)
	}
	if challenged == 0 || challenged > 32 || throttled != flood-challenged {
		t.Fatalf("%d refreshes: %d challenged, %d throttled; want at most 32 challenged, the rest throttled", flood, challenged, throttled)
	}
	if got := counter(t, a.binder, "cloakroom_dbsc_refreshes_total", "throttled"); got != float64(throttled) {
		t.Fatalf("throttled counted %v, want %d", got, throttled)
	}
	wait, err := strconv.Atoi(retryAfter)
	if err != nil || wait < 1 || wait > 10 {
		t.Fatalf("Retry-After %q, want 1 to 10 seconds", retryAfter)
	}
	// After Retry-After, the session gets a challenge again, and the
	// device's proof over it a bound cookie.
	a.clock.Advance(time.Duration(wait) * time.Second)
	if err := c.Refresh(ctx); err != nil || c.Session() == nil {
		t.Fatalf("refresh after Retry-After: %v\n%s", err, a.logs)
	}
	if got := a.page(c); got != http.StatusOK {
		t.Fatalf("page after the refresh: %d", got)
	}
}

// The flood of one session spends that session's budget only: another
// session refreshes as usual.
func TestRefreshFloodSparesOtherSessions(t *testing.T) {
	a, _ := newCountingApp(t)
	mallory, alice := a.client(dbsc.AlgES256), a.client(dbsc.AlgES256)
	a.login(mallory, "mallory")
	a.login(alice, "alice")
	ctx := context.Background()
	for range 200 {
		if _, err := mallory.RefreshWith(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := mallory.RefreshWith(ctx, ""); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("the flooding session: %d, want 503", r.Status)
	}
	a.clock.Advance(lifetime)
	if got := a.page(alice); got != http.StatusOK {
		t.Fatalf("another session during the flood: %d\n%s", got, a.logs)
	}
}

// A browser refreshing at the fastest cadence there is (a bound cookie of
// the shortest lifetime, 10 s), each refresh asking for a challenge first
// (two records: the 403's and the next one the answer carries), is never
// throttled, however long it goes on.
func TestRefreshCadenceNeverThrottled(t *testing.T) {
	a, _ := newCountingApp(t)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	ctx := context.Background()
	for i := range 360 { // an hour
		a.clock.Advance(dbsc.MinCookieLifetime)
		if r, err := c.RefreshWith(ctx, ""); err != nil || r.Status != http.StatusForbidden {
			t.Fatalf("round %d: challenge %v %+v", i, err, r)
		}
		if got := a.page(c); got != http.StatusOK {
			t.Fatalf("round %d: %d\n%s", i, got, a.logs)
		}
	}
	if got := counter(t, a.binder, "cloakroom_dbsc_refreshes_total", "throttled"); got != 0 {
		t.Fatalf("%v refreshes throttled", got)
	}
}

// Many sessions flooding together write at most the overall bound; a
// session spends its own budget before the overall one, so a session over
// its own bound takes nothing from the others.
func TestRefreshFloodOverallBound(t *testing.T) {
	a, store := newCountingApp(t)
	dbsc.SetRefreshLimits(a.binder, ratelimit.Rate{PerSec: 0.001, Burst: 2}, ratelimit.Rate{PerSec: 0.001, Burst: 5})
	ctx := context.Background()
	var got []int
	var written int64
	for i := range 4 {
		c := a.client(dbsc.AlgES256)
		a.login(c, "user"+strconv.Itoa(i))
		before := store.writes.Load()
		challenged := 0
		for range 10 {
			r, err := c.RefreshWith(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if r.Status == http.StatusForbidden {
				challenged++
			} else if r.Status != http.StatusServiceUnavailable {
				t.Fatalf("session %d: %d %s", i, r.Status, r.Body)
			}
		}
		got = append(got, challenged)
		written += store.writes.Load() - before
	}
	if written != 5 {
		t.Fatalf("%d challenge records written, want the overall burst of 5", written)
	}
	if want := []int{2, 2, 1, 0}; !slices.Equal(got, want) {
		t.Fatalf("challenges per session %v, want %v", got, want)
	}
}
