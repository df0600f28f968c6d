package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

// throttled asserts err is a *ThrottledError asking to wait want.
func throttled(t *testing.T, err error, want time.Duration) {
	t.Helper()
	var te *accounts.ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, accounts.ErrThrottled) {
		t.Fatalf("got %v, want a *ThrottledError", err)
	}
	if te.RetryAfter != want {
		t.Fatalf("RetryAfter = %v, want %v", te.RetryAfter, want)
	}
}

// countingFixture is a fixture whose hashes are counted.
func countingFixture(t *testing.T, edit ...func(*accounts.Config)) (*fixture, *atomic.Int64) {
	var hashes atomic.Int64
	edit = append(edit, func(c *accounts.Config) {
		*c = accounts.WithHashHook(*c, func() { hashes.Add(1) })
	})
	return newFixture(t, memaccounts.New(), edit...), &hashes
}

func TestThrottlePerAccount(t *testing.T) {
	f, hashes := countingFixture(t)
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password")
	// Every guess comes from a new address, so only the account counter
	// can stop them.
	ip := 0
	guess := func(password string) error {
		ip++
		_, err := f.svc.Authenticate(ctx, "Alice", password, fmt.Sprintf("198.51.100.%d", ip))
		return err
	}

	for i := range 5 {
		if err := guess("wrong guess"); err != accounts.ErrInvalidCredentials {
			t.Fatalf("free failure %d: %v", i+1, err)
		}
	}
	// Throttled attempts are refused before hashing, even with the right
	// password, and are not counted.
	before := hashes.Load()
	for range 3 {
		throttled(t, guess("alice's long password"), time.Second)
	}
	if hashes.Load() != before {
		t.Errorf("throttled attempts computed %d hashes", hashes.Load()-before)
	}

	// Each further failure doubles the wait, up to the 5-minute cap.
	want := time.Second
	var waits []time.Duration
	for range 12 {
		f.clock.Advance(want)
		if err := guess("wrong guess"); err != accounts.ErrInvalidCredentials {
			t.Fatalf("guess after waiting %v: %v", want, err)
		}
		var te *accounts.ThrottledError
		if !errors.As(guess("wrong guess"), &te) {
			t.Fatal("immediate retry was not throttled")
		}
		waits = append(waits, te.RetryAfter)
		want = te.RetryAfter
	}
	wantWaits := []time.Duration{2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300}
	for i := range wantWaits {
		wantWaits[i] *= time.Second
	}
	if !slices.Equal(waits, wantWaits) {
		t.Errorf("waits %v, want %v", waits, wantWaits)
	}

	// Retry-After counts down with the clock.
	f.clock.Advance(100 * time.Second)
	throttled(t, guess("alice's long password"), 200*time.Second)

	// Once the cap has passed, the victim gets in from anywhere.
	f.clock.Advance(200 * time.Second)
	if _, err := f.svc.Authenticate(ctx, "alice", "alice's long password", "203.0.113.9"); err != nil {
		t.Fatalf("victim after the cap: %v", err)
	}
	// The success cleared the account's counter: five free failures again.
	for i := range 5 {
		if err := guess("wrong guess"); err != accounts.ErrInvalidCredentials {
			t.Fatalf("free failure %d after a success: %v", i+1, err)
		}
	}
	throttled(t, guess("wrong guess"), time.Second)

	// Other accounts are not affected.
	f.mustAdd(t, "bob", "bob's long password")
	if _, err := f.svc.Authenticate(ctx, "bob", "bob's long password", "198.51.100.1"); err != nil {
		t.Errorf("bob throttled by alice's failures: %v", err)
	}
}

func TestThrottleUnknownAccountsLikeKnownOnes(t *testing.T) {
	f, _ := countingFixture(t)
	for i := range 5 {
		_, err := f.svc.Authenticate(t.Context(), "nobody", "some guess!", fmt.Sprintf("198.51.100.%d", i))
		if err != accounts.ErrInvalidCredentials {
			t.Fatal(err)
		}
	}
	// Same answer as for an existing account: throttling reveals nothing.
	_, err := f.svc.Authenticate(t.Context(), "nobody", "some guess!", "198.51.100.99")
	throttled(t, err, time.Second)
}

func TestThrottlePerIP(t *testing.T) {
	f, hashes := countingFixture(t)
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password")
	const attacker = "192.0.2.66"
	user := 0
	spray := func() error { // one guess against a new account each time
		user++
		_, err := f.svc.Authenticate(ctx, fmt.Sprintf("user%d", user), "Summer2026!", attacker)
		return err
	}
	for i := range 20 {
		if err := spray(); err != accounts.ErrInvalidCredentials {
			t.Fatalf("free failure %d: %v", i+1, err)
		}
	}
	before := hashes.Load()
	throttled(t, spray(), time.Second)
	// The attacker is throttled even on the right password of a real account.
	_, err := f.svc.Authenticate(ctx, "alice", "alice's long password", attacker)
	throttled(t, err, time.Second)
	if hashes.Load() != before {
		t.Error("throttled attempts computed hashes")
	}
	// Another client is not.
	if _, err := f.svc.Authenticate(ctx, "alice", "alice's long password", "192.0.2.67"); err != nil {
		t.Fatalf("other client: %v", err)
	}

	want := time.Second
	var waits []time.Duration
	for range 12 {
		f.clock.Advance(want)
		if err := spray(); err != accounts.ErrInvalidCredentials {
			t.Fatalf("spray after waiting %v: %v", want, err)
		}
		var te *accounts.ThrottledError
		if !errors.As(spray(), &te) {
			t.Fatal("immediate retry was not throttled")
		}
		waits = append(waits, te.RetryAfter)
		want = te.RetryAfter
	}
	wantWaits := []time.Duration{2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900}
	for i := range wantWaits {
		wantWaits[i] *= time.Second
	}
	if !slices.Equal(waits, wantWaits) {
		t.Errorf("waits %v, want %v (capped at 15 minutes)", waits, wantWaits)
	}

	// After the cap, a success from the address clears its counter.
	f.clock.Advance(15 * time.Minute)
	if _, err := f.svc.Authenticate(ctx, "alice", "alice's long password", attacker); err != nil {
		t.Fatalf("login after the cap: %v", err)
	}
	for i := range 20 {
		if err := spray(); err != accounts.ErrInvalidCredentials {
			t.Fatalf("free failure %d after a success: %v", i+1, err)
		}
	}
	throttled(t, spray(), time.Second)
}

func TestThrottleIPv6ByPrefix(t *testing.T) {
	f, _ := countingFixture(t, func(c *accounts.Config) { c.IPThrottle.FreeFailures = 3 })
	for i := range 3 {
		// Rotating through one /64 does not help.
		ip := fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1)
		if _, err := f.svc.Authenticate(t.Context(), fmt.Sprintf("u%d", i), "long guess", ip); err != accounts.ErrInvalidCredentials {
			t.Fatal(err)
		}
	}
	_, err := f.svc.Authenticate(t.Context(), "u9", "long guess", "2001:db8:1:2:ffff:ffff:ffff:ffff")
	throttled(t, err, time.Second)
	// The neighbouring /64 is someone else.
	if _, err := f.svc.Authenticate(t.Context(), "u9", "long guess", "2001:db8:1:3::1"); err != accounts.ErrInvalidCredentials {
		t.Errorf("next /64: %v", err)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                 "192.0.2.1",
		"192.0.2.1:8080":            "192.0.2.1",
		"::ffff:192.0.2.1":          "192.0.2.1",
		"[::ffff:192.0.2.1]:1":      "192.0.2.1",
		"2001:db8::1":               "2001:db8::/64",
		"2001:DB8::abcd:1":          "2001:db8::/64",
		"[2001:db8:0:1::5]:443":     "2001:db8:0:1::/64",
		"fe80::1%eth0":              "fe80::/64",
		"":                          "?",
		"not an address":            "?not an address",
		string(make([]byte, 10000)): "?" + string(make([]byte, 64)) + "...",
	} {
		if got := accounts.ClientKey(in); got != want {
			t.Errorf("ClientKey(%.20q) = %.80q, want %.80q", in, got, want)
		}
	}
}

func TestThrottleWindowExpires(t *testing.T) {
	f, _ := countingFixture(t)
	fail := func(ip string) error {
		_, err := f.svc.Authenticate(t.Context(), "alice", "wrong guess", ip)
		return err
	}
	for i := range 5 {
		fail(fmt.Sprintf("198.51.100.%d", i))
	}
	throttled(t, fail("198.51.100.50"), time.Second)
	// An hour without failures: the account starts afresh.
	f.clock.Advance(time.Hour + time.Second)
	for i := range 5 {
		if err := fail(fmt.Sprintf("198.51.100.%d", i)); err != accounts.ErrInvalidCredentials {
			t.Fatalf("failure %d after the window: %v", i+1, err)
		}
	}
	throttled(t, fail("198.51.100.50"), time.Second)
}

func TestThrottleTableIsBounded(t *testing.T) {
	f, _ := countingFixture(t, func(c *accounts.Config) {
		c.Throttle = memaccounts.NewThrottle(3)
		c.IPThrottle.FreeFailures = 1 // every failure blocks its address for a second
	})
	try := func(ip string) error {
		_, err := f.svc.Authenticate(t.Context(), "user-"+ip, "long guess", ip)
		return err
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if err := try(ip); err != accounts.ErrInvalidCredentials {
			t.Fatalf("%s: %v", ip, err)
		}
	}
	// The table is full of blocked addresses: a new one is throttled, not
	// let through by evicting one of them.
	throttled(t, try("192.0.2.4"), time.Second)
	throttled(t, try("192.0.2.1"), time.Second)
	// Once their blocks have passed, the oldest makes room.
	f.clock.Advance(time.Second)
	if err := try("192.0.2.4"); err != accounts.ErrInvalidCredentials {
		t.Fatalf("new address after the blocks passed: %v", err)
	}
	throttled(t, try("192.0.2.4"), time.Second)
	if err := try("192.0.2.1"); err != accounts.ErrInvalidCredentials {
		t.Errorf("oldest address still tracked in a full table: %v", err)
	}
}

// TestHashConcurrencyBound floods Authenticate and checks that no more than
// MaxConcurrentHashes argon2id computations are ever in flight.
func TestHashConcurrencyBound(t *testing.T) {
	const limit, callers = 3, 12
	store := memaccounts.New()
	setup := newFixture(t, store)
	for i := range callers {
		setup.mustAdd(t, fmt.Sprintf("user%d", i), "a long password")
	}

	var inFlight, peak atomic.Int64
	entered := make(chan struct{}, callers)
	release := make(chan struct{})
	f := newFixture(t, store, func(c *accounts.Config) {
		c.MaxConcurrentHashes = limit
		c.MaxHashWait = time.Minute
		*c = accounts.WithHashHook(*c, func() {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			entered <- struct{}{}
			<-release
			inFlight.Add(-1)
		})
	})

	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			// Half the callers guess wrong: failures hash too.
			password := "a long password"
			if i%2 == 1 {
				password = "a wrong password"
			}
			_, errs[i] = f.svc.Authenticate(t.Context(), fmt.Sprintf("user%d", i), password, fmt.Sprintf("192.0.2.%d", i))
		})
	}
	for range limit {
		<-entered
	}
	// The slots are full; nobody else may start hashing while they are held.
	select {
	case <-entered:
		t.Errorf("a hash started with %d already in flight", limit)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if got := peak.Load(); got != limit {
		t.Errorf("peak hashes in flight = %d, want %d", got, limit)
	}
	for i, err := range errs {
		if want := i%2 == 1; (err == accounts.ErrInvalidCredentials) != want || (err != nil && !want) {
			t.Errorf("caller %d: %v", i, err)
		}
	}
}

func TestHashWaitBounded(t *testing.T) {
	store := memaccounts.New()
	setup := newFixture(t, store)
	setup.mustAdd(t, "alice", "alice's long password")
	setup.mustAdd(t, "bob", "bob's long password")

	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	f := newFixture(t, store, func(c *accounts.Config) {
		c.MaxConcurrentHashes = 1
		c.MaxHashWait = 5 * time.Millisecond
		*c = accounts.WithHashHook(*c, func() {
			once.Do(func() { close(held); <-release })
		})
	})
	done := make(chan error)
	go func() {
		_, err := f.svc.Authenticate(context.Background(), "alice", "alice's long password", "192.0.2.1")
		done <- err
	}()
	<-held

	// The only slot is taken: callers give up after MaxHashWait with
	// ErrBusy, not a throttling answer, more times than bob's free
	// failures: being busy is the server's state, not the user's guesses.
	for range 8 {
		_, err := f.svc.Authenticate(t.Context(), "bob", "bob's long password", "192.0.2.2")
		if !errors.Is(err, accounts.ErrBusy) || errors.Is(err, accounts.ErrThrottled) {
			t.Fatalf("login while every slot is held: %v, want ErrBusy only", err)
		}
	}
	if err := f.svc.Add(t.Context(), "carol", "carol's long password", nil, ""); !errors.Is(err, accounts.ErrBusy) {
		t.Errorf("Add while busy: %v, want ErrBusy", err)
	}
	// A caller whose request ends stops waiting.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := f.svc.Authenticate(ctx, "bob", "bob's long password", "192.0.2.2"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v, want context.Canceled", err)
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the slow login: %v", err)
	}
	// Attempts that never reached the password check were not counted.
	if _, err := f.svc.Authenticate(t.Context(), "bob", "bob's long password", "192.0.2.2"); err != nil {
		t.Errorf("bob after busy refusals: %v", err)
	}
}

// TestEveryFailureCostsOneHash checks the work, not the time: each kind of
// failed login computes exactly one hash, like a success.
func TestEveryFailureCostsOneHash(t *testing.T) {
	f, hashes := countingFixture(t)
	f.mustAdd(t, "alice", "alice's long password")
	f.mustAdd(t, "carol", "carol's long password")
	if err := f.svc.Disable(t.Context(), "carol"); err != nil {
		t.Fatal(err)
	}
	f.mustAdd(t, "dave", "dave's long password")
	if _, err := f.store.Update(t.Context(), "dave", accounts.Change{PasswordHash: new("$argon2id$v=19$corrupt")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, name, password string }{
		{"success", "alice", "alice's long password"},
		{"corrupt stored hash", "dave", "dave's long password"},
		{"wrong password", "alice", "not alice's password"},
		{"unknown user", "nobody", "not alice's password"},
		{"disabled user", "carol", "carol's long password"},
	} {
		before := hashes.Load()
		_, err := f.svc.Authenticate(t.Context(), c.name, c.password, "192.0.2.1")
		if (err == nil) != (c.what == "success") || (err != nil && err != accounts.ErrInvalidCredentials) {
			t.Errorf("%s: %v", c.what, err)
		}
		if n := hashes.Load() - before; n != 1 {
			t.Errorf("%s computed %d hashes, want 1", c.what, n)
		}
	}
}
