package accounts

import (
	"context"
	"net/netip"
	"time"
)

// ThrottleConfig sets how failed logins slow down further attempts for one
// key (an account, a known device or a client IP). The first FreeFailures
// failures within Window cost nothing; after that each failure makes the
// next attempt wait BaseDelay, then twice as long, and so on up to
// MaxDelay. Attempts made while waiting are refused without being counted,
// so they cannot extend the wait. Zero fields take the defaults given in
// [Config].
type ThrottleConfig struct {
	FreeFailures int
	BaseDelay    time.Duration
	MaxDelay     time.Duration
	// Window is how long a key's failures are remembered after its last
	// failure. It is raised to MaxDelay if shorter.
	Window time.Duration
}

// Defaults for [Config.AccountThrottle], [Config.DeviceThrottle] and
// [Config.IPThrottle].
var (
	defaultAccountThrottle = ThrottleConfig{FreeFailures: 5, BaseDelay: time.Second, MaxDelay: 5 * time.Minute, Window: time.Hour}
	defaultDeviceThrottle  = ThrottleConfig{FreeFailures: 5, BaseDelay: time.Second, MaxDelay: 5 * time.Minute, Window: time.Hour}
	defaultIPThrottle      = ThrottleConfig{FreeFailures: 20, BaseDelay: time.Second, MaxDelay: 15 * time.Minute, Window: time.Hour}
)

func (c ThrottleConfig) withDefaults(d ThrottleConfig) ThrottleConfig {
	if c.FreeFailures <= 0 {
		c.FreeFailures = d.FreeFailures
	}
	if c.BaseDelay <= 0 {
		c.BaseDelay = d.BaseDelay
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = d.MaxDelay
	}
	c.MaxDelay = max(c.MaxDelay, c.BaseDelay)
	if c.Window <= 0 {
		c.Window = d.Window
	}
	c.Window = max(c.Window, c.MaxDelay)
	return c
}

// Delay is the wait imposed after the failure that brought a key's count to
// failures: none within FreeFailures, then BaseDelay doubling per failure
// up to MaxDelay. Shared [ThrottleStore] implementations that compute the
// wait in Go call it so every store applies the same rule.
func (c ThrottleConfig) Delay(failures int) time.Duration {
	if failures < c.FreeFailures {
		return 0
	}
	d := c.BaseDelay
	for extra := failures - c.FreeFailures; extra > 0 && d < c.MaxDelay; extra-- {
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// Kinds of throttling keys. Each kind is a table of its own.
const (
	ThrottleAccount = "account" // failures against an account from devices it does not know
	ThrottleDevice  = "device"  // failures from one known device (a device token's nonce)
	ThrottleIP      = "ip"      // failures from one client IP (IPv6 by /64), unknown devices only
)

// ThrottleKey names one failure counter and the rule that applies to it.
type ThrottleKey struct {
	Kind string // ThrottleAccount, ThrottleDevice or ThrottleIP
	Key  string
	Rule ThrottleConfig
}

// ThrottleStore keeps the failed-login counters. memaccounts.NewThrottle
// counts per process; redisaccounts.NewThrottle and pgaccounts.NewThrottle
// keep them in the database the gateway nodes share, so N nodes do not give
// an attacker N budgets. Times are the service's
// clock, passed in, so one clock rules every node's counters.
type ThrottleStore interface {
	// Begin atomically refuses the attempt, returning the longest wait
	// (> 0) and changing nothing, if any key is blocked at now or cannot
	// be tracked; otherwise it charges every key with one failure under
	// its rule and returns 0.
	Begin(ctx context.Context, now time.Time, keys []ThrottleKey) (time.Duration, error)
	// Refund takes back the failure Begin charged to each key, for an
	// attempt that ended without a verdict (store error, cancelled).
	Refund(ctx context.Context, now time.Time, keys []ThrottleKey) error
	// Reset forgets the keys' failures (a successful login).
	Reset(ctx context.Context, keys []ThrottleKey) error
	// DeviceKey returns the 32-byte key that signs device tokens, the same
	// for every node sharing the store; it is created on first use.
	DeviceKey(ctx context.Context) ([]byte, error)
}

// clientKey maps a client address to its throttling key. IPv6 addresses are
// grouped by /64, the block a single subscriber usually gets, so rotating
// through one's own addresses gains nothing. A port is ignored. A string
// that is no address is used as it is (bounded), so a missing IP ("") puts
// every such caller in one shared bucket: fail closed, not open.
func clientKey(clientIP string) string {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(clientIP); err == nil {
		addr = ap.Addr()
	} else if a, err := netip.ParseAddr(clientIP); err == nil {
		addr = a
	} else {
		return "?" + truncate(clientIP, 64)
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		prefix, _ := addr.Prefix(64)
		return prefix.String()
	}
	return addr.String()
}
