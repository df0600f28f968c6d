package accounts_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

// callLog records the calls made to the stores behind a Service.
type callLog struct {
	mu    sync.Mutex
	calls map[string]int
}

func (l *callLog) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[name]++
}

// take returns the calls made since the last take, as "name×n" sorted.
func (l *callLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(l.calls)) {
		out = append(out, fmt.Sprintf("%s×%d", k, l.calls[k]))
	}
	l.calls = map[string]int{}
	return strings.Join(out, " ")
}

// countedStore passes every call to a real memory store and records it.
type countedStore struct {
	accounts.Store
	log *callLog
}

func (s countedStore) Get(ctx context.Context, name string) (accounts.Record, error) {
	s.log.add("store.Get")
	return s.Store.Get(ctx, name)
}

func (s countedStore) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	s.log.add("store.Update")
	return s.Store.Update(ctx, name, c)
}

// countedThrottle does the same for the throttle store.
type countedThrottle struct {
	accounts.ThrottleStore
	log *callLog
}

func (s countedThrottle) Begin(ctx context.Context, now time.Time, keys []accounts.ThrottleKey) (time.Duration, error) {
	s.log.add("throttle.Begin")
	return s.ThrottleStore.Begin(ctx, now, keys)
}

func (s countedThrottle) Refund(ctx context.Context, now time.Time, keys []accounts.ThrottleKey) error {
	s.log.add("throttle.Refund")
	return s.ThrottleStore.Refund(ctx, now, keys)
}

func (s countedThrottle) Reset(ctx context.Context, keys []accounts.ThrottleKey) error {
	s.log.add("throttle.Reset")
	return s.ThrottleStore.Reset(ctx, keys)
}

// TestFailedLoginsDoTheSameWork proves "no user enumeration" structurally:
// an unknown user, a disabled user, a wrong password and an unusable
// stored hash each compute exactly one argon2id hash and make exactly the
// same store and throttle calls, and give the same error; so neither the
// answer nor the work (hence the time) can tell them apart. Only a success
// does more (it clears the counters).
func TestFailedLoginsDoTheSameWork(t *testing.T) {
	log := &callLog{calls: map[string]int{}}
	var hashes int
	var mu sync.Mutex
	users := memaccounts.New()
	setup := newFixture(t, users)
	setup.mustAdd(t, "alice", "alice's long password")
	setup.mustAdd(t, "carol", "carol's long password")
	if err := setup.svc.Disable(t.Context(), "carol"); err != nil {
		t.Fatal(err)
	}
	setup.mustAdd(t, "dave", "dave's long password")
	if _, err := users.Update(t.Context(), "dave", accounts.Change{PasswordHash: new("$argon2id$v=19$corrupt")}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, countedStore{users, log}, func(c *accounts.Config) {
		c.Throttle = countedThrottle{memaccounts.NewThrottle(0), log}
		*c = accounts.WithHashHook(*c, func() { mu.Lock(); hashes++; mu.Unlock() })
	})
	log.take()

	failures := []struct{ what, name, password string }{
		{"wrong password", "alice", "not alice's password"},
		{"unknown user", "nobody", "not alice's password"},
		{"disabled user", "carol", "carol's long password"},
		{"unusable stored hash", "dave", "dave's long password"},
	}
	var want string
	for i, c := range failures {
		mu.Lock()
		hashes = 0
		mu.Unlock()
		_, err := f.svc.Authenticate(t.Context(), c.name, c.password, fmt.Sprintf("192.0.2.%d", i))
		if err != accounts.ErrInvalidCredentials {
			t.Errorf("%s: %v, want exactly ErrInvalidCredentials", c.what, err)
		}
		mu.Lock()
		work := fmt.Sprintf("hash×%d %s", hashes, log.take())
		mu.Unlock()
		t.Logf("%-20s %s", c.what, work)
		if i == 0 {
			want = work
			if want != "hash×1 store.Get×1 throttle.Begin×1" {
				t.Errorf("a wrong password does %q, want one hash, one Get, one Begin", want)
			}
		} else if work != want {
			t.Errorf("%s does %q, a wrong password %q: the work reveals the account", c.what, work, want)
		}
	}
	mu.Lock()
	hashes = 0
	mu.Unlock()
	if _, err := f.svc.Authenticate(t.Context(), "alice", "alice's long password", "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	if work := fmt.Sprintf("hash×%d %s", hashes, log.take()); work != "hash×1 store.Get×1 throttle.Begin×1 throttle.Reset×1" {
		t.Errorf("success does %q", work)
	}
}
