package accounts_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

// TestKnownDeviceOutlastsLockoutAttack replays the lockout attack with a
// fake clock: for 24 hours an attacker sends one wrong password for the
// victim's account each time the block expires (Retry-After), rotating
// over 16 IPv4 addresses. The victim, on a browser that logged in before,
// tries every 7 minutes and always gets in; from a browser the account
// does not know they are throttled like the attacker; and the attacker's
// counted guesses stay bounded by the account's rule.
func TestKnownDeviceOutlastsLockoutAttack(t *testing.T) {
	f, _ := countingFixture(t)
	ctx := t.Context()
	const password = "alice's long password"
	f.mustAdd(t, "alice", password)
	first, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: password, ClientIP: "203.0.113.7"})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Devices) != 1 {
		t.Fatalf("first login gave %d device tokens, want 1", len(first.Devices))
	}
	devices := first.Devices

	start := f.clock.Now()
	end := start.Add(24 * time.Hour)
	attackerNext, victimNext := start, start.Add(7*time.Minute)
	var guesses, attackerAttempts, victimAttempts, victimIn, unknownThrottled int
	for {
		now := f.clock.Now()
		if now.After(end) {
			break
		}
		if !attackerNext.After(now) {
			attackerAttempts++
			_, err := f.svc.Authenticate(ctx, "alice", "wrong guess", fmt.Sprintf("198.51.100.%d", attackerAttempts%16))
			var te *accounts.ThrottledError
			switch {
			case errors.As(err, &te):
				attackerNext = now.Add(te.RetryAfter)
			case err == accounts.ErrInvalidCredentials:
				guesses++ // counted; try again at once to learn the wait
			default:
				t.Fatalf("attacker: %v", err)
			}
		}
		if !victimNext.After(now) {
			victimAttempts++
			res, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: password, ClientIP: "203.0.113.7", Devices: devices})
			if err == nil {
				victimIn++
				devices = res.Devices
			} else {
				t.Errorf("victim on a known device at +%v: %v", now.Sub(start), err)
			}
			// The same person on a new browser is an unknown device.
			if _, err := f.svc.Authenticate(ctx, "alice", password, "203.0.113.7"); errors.Is(err, accounts.ErrThrottled) {
				unknownThrottled++
			}
			victimNext = now.Add(7 * time.Minute)
		}
		f.clock.Advance(max(min(attackerNext.Sub(f.clock.Now()), victimNext.Sub(f.clock.Now())), 0))
		if f.clock.Now() == now {
			f.clock.Advance(time.Millisecond)
		}
	}
	t.Logf("24 h: attacker %d attempts, %d counted guesses; victim in %d of %d; unknown device throttled %d times",
		attackerAttempts, guesses, victimIn, victimAttempts, unknownThrottled)
	if victimIn != victimAttempts || victimAttempts < 200 {
		t.Errorf("victim got in %d of %d times on a known device", victimIn, victimAttempts)
	}
	// Bounded by the rule: 5 free, then at most one per 5-minute cap after
	// the doubling ramp.
	if limit := 5 + int(24*time.Hour/(5*time.Minute)) + 10; guesses > limit {
		t.Errorf("attacker made %d counted guesses in 24 h, more than %d", guesses, limit)
	}
	if unknownThrottled == 0 {
		t.Error("the attack never throttled an unknown device: the scenario did not attack")
	}
}

// TestDeviceTokens checks what the tokens are bound to: a token is valid
// for the account it was issued for only, a forged or foreign one makes an
// unknown device, and a browser keeps tokens for several accounts.
func TestDeviceTokens(t *testing.T) {
	f, _ := countingFixture(t)
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password")
	f.mustAdd(t, "bob", "bob's long password")
	a, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "Alice", Password: "alice's long password", ClientIP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "bob", Password: "bob's long password", ClientIP: "192.0.2.1", Devices: a.Devices})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Devices) != 2 || b.Devices[1] != a.Devices[0] {
		t.Fatalf("bob's login kept %q, want bob's token then alice's", b.Devices)
	}
	// Exhaust the unknown-device budget of alice.
	for range 5 {
		f.svc.Authenticate(ctx, "alice", "wrong guess", "198.51.100.1")
	}
	_, err = f.svc.Authenticate(ctx, "alice", "alice's long password", "192.0.2.1")
	throttled(t, err, time.Second)
	// Bob's token is no key to alice's account, nor is a forged one.
	forged := []byte(a.Devices[0])
	forged[len(forged)-1] ^= 1
	for _, devices := range [][]string{{b.Devices[0]}, {string(forged)}} {
		_, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: "alice's long password", ClientIP: "192.0.2.1", Devices: devices})
		if !errors.Is(err, accounts.ErrThrottled) {
			t.Errorf("devices %q on alice: %v, want throttled", devices, err)
		}
	}
	// Alice's own token (name in any case) gets in.
	res, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "ALICE", Password: "alice's long password", ClientIP: "192.0.2.1", Devices: b.Devices})
	if err != nil {
		t.Fatalf("alice's known device: %v", err)
	}
	if len(res.Devices) != 2 || res.Devices[1] != b.Devices[0] {
		t.Errorf("alice's token not first or bob's lost: %q", res.Devices)
	}
	// A known device is throttled on its own failures.
	for range 5 {
		f.svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: "wrong guess", ClientIP: "192.0.2.1", Devices: res.Devices})
	}
	_, err = f.svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: "alice's long password", ClientIP: "192.0.2.1", Devices: res.Devices})
	throttled(t, err, time.Second)
}

// TestThrottleFloodKeepsBlockedAccount floods the account table with
// failures for made-up names from many IPv6 /64s, ten times its size; the
// blocked account stays blocked and no free guess comes back.
func TestThrottleFloodKeepsBlockedAccount(t *testing.T) {
	const size = 500
	f, hashes := countingFixture(t, func(c *accounts.Config) { c.Throttle = memaccounts.NewThrottle(size) })
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password")
	for i := range 5 {
		f.svc.Authenticate(ctx, "alice", "wrong guess", fmt.Sprintf("198.51.100.%d", i))
	}
	_, err := f.svc.Authenticate(ctx, "alice", "wrong guess", "198.51.100.99")
	throttled(t, err, time.Second)

	for i := range 10 * size {
		ip := fmt.Sprintf("2001:db8:%x::1", i/20) // 20 failures per /64, its free budget
		if _, err := f.svc.Authenticate(ctx, fmt.Sprintf("made-up-%d", i), "wrong guess", ip); err != accounts.ErrInvalidCredentials {
			t.Fatalf("flood attempt %d: %v", i, err)
		}
	}
	before := hashes.Load()
	for i := range 5 {
		_, err := f.svc.Authenticate(ctx, "alice", "wrong guess", fmt.Sprintf("203.0.113.%d", i))
		throttled(t, err, time.Second)
	}
	if n := hashes.Load() - before; n != 0 {
		t.Errorf("%d free guesses came back after the flood", n)
	}
}
