//go:build unix

package accounts_test

import (
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestTimingDoesNotRevealUsers uses the real ASVS parameters: an unknown
// user, a disabled user and a wrong password must cost one such hash each.
func TestTimingDoesNotRevealUsers(t *testing.T) {
	ctx := t.Context()
	store := memaccounts.New()
	svc := accounts.New(store, accounts.Config{
		RevokeSessions:  accounts.NoSessions,
		Throttle:        memaccounts.NewThrottle(0),
		Logger:          slog.New(slog.DiscardHandler),
		AccountThrottle: accounts.ThrottleConfig{FreeFailures: 1000},
		IPThrottle:      accounts.ThrottleConfig{FreeFailures: 1000},
	})
	if err := svc.Add(ctx, "alice", "alice's long password", nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := svc.Add(ctx, "carol", "carol's long password", nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := svc.Disable(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	rec, _ := store.Get(ctx, "alice")
	if h, err := accounts.ParseHash(rec.PasswordHash); err != nil || h.Params != accounts.DefaultParams() {
		t.Fatalf("stored hash %q does not use the default parameters", rec.PasswordHash)
	}

	cases := []struct{ what, name, password string }{
		{"wrong password", "alice", "not alice's password"},
		{"unknown user", "nobody", "not alice's password"},
		{"disabled user", "carol", "carol's long password"},
	}
	// The cost is measured as this process's CPU time, not wall time:
	// other jobs on a loaded machine delay a login without making it use
	// more CPU, so they cannot skew the comparison. The cases are also
	// interleaved (each round in a rotated order) and compared by the
	// median over the rounds of each case's cost divided by the wrong
	// password's in the same round, so a few disturbed rounds (a GC cycle)
	// cannot move the result. The structural proof is
	// TestFailedLoginsDoTheSameWork; this checks the real cost, with a
	// margin that only a missing hash (a ratio near 0) can break.
	const rounds = 9
	ratios := make([][]float64, len(cases))
	for round := range rounds {
		took := make([]time.Duration, len(cases))
		for j := range cases {
			i := (j + round) % len(cases)
			c := cases[i]
			start := cpuTime(t)
			_, err := svc.Authenticate(ctx, c.name, c.password, "192.0.2.1")
			took[i] = cpuTime(t) - start
			if err != accounts.ErrInvalidCredentials {
				t.Fatalf("%s: %v, want exactly ErrInvalidCredentials", c.what, err)
			}
		}
		for i := range cases {
			ratios[i] = append(ratios[i], float64(took[i])/float64(took[0]))
		}
	}
	for i, c := range cases[1:] {
		r := slices.Clone(ratios[i+1])
		slices.Sort(r)
		median := r[len(r)/2]
		t.Logf("%-15s median CPU-time ratio to a wrong password over %d rounds: %.2f", c.what, rounds, median)
		if median < 0.5 {
			t.Errorf("%s costs %.2f of a wrong password (median of %d interleaved rounds): its timing reveals it", c.what, median, rounds)
		}
	}
}
