package accounts

import (
	"container/list"
	"context"
	"crypto/rand"
	"net/netip"
	"sync"
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

// DefaultMaxThrottleEntries is the size of each table of the memory
// throttle store (accounts, devices, client IPs) unless configured.
const DefaultMaxThrottleEntries = 50_000

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

// ThrottleStore keeps the failed-login counters. The default,
// [NewMemoryThrottle], counts per process; redisaccounts.NewThrottle and
// pgaccounts.NewThrottle keep them in the database the gateway nodes share,
// so N nodes do not give an attacker N budgets. Times are the service's
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

// MemoryThrottle is the in-process [ThrottleStore]: one bounded table per
// kind of key. Blocked entries are never evicted to make room while an
// unblocked one could go instead; when a table is full of blocked entries,
// a new key is refused (throttled) until one of them unblocks, so flooding
// the table with fresh names or addresses cannot free a blocked account.
type MemoryThrottle struct {
	mu     sync.Mutex
	max    int
	tables map[string]*throttleTable
	key    []byte
}

// NewMemoryThrottle returns a memory store whose tables hold at most
// maxEntries keys each (DefaultMaxThrottleEntries when <= 0). Its device
// key is random: known devices are forgotten when the process restarts.
func NewMemoryThrottle(maxEntries int) *MemoryThrottle {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxThrottleEntries
	}
	return &MemoryThrottle{max: maxEntries, tables: make(map[string]*throttleTable), key: []byte(rand.Text() + rand.Text())[:32]}
}

// throttleTable keeps its counters in two lists ordered by last failure:
// cold ones (fewer failures than the free budget, never blocked) and hot
// ones. Cold entries are evicted first.
type throttleTable struct {
	entries   map[string]*counter
	cold, hot list.List // values: *counter
}

type counter struct {
	key          string
	failures     int
	last         time.Time // when the last failure was charged
	blockedUntil time.Time
	hot          bool
	el           *list.Element
}

func (m *MemoryThrottle) table(kind string) *throttleTable {
	t := m.tables[kind]
	if t == nil {
		t = &throttleTable{entries: make(map[string]*counter)}
		m.tables[kind] = t
	}
	return t
}

// Begin implements [ThrottleStore].
func (m *MemoryThrottle) Begin(_ context.Context, now time.Time, keys []ThrottleKey) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		t := m.table(k.Kind)
		t.expire(now, k.Rule.Window)
		wait = max(wait, t.wait(k.Key, now, m.max))
	}
	if wait > 0 {
		return wait, nil
	}
	for _, k := range keys {
		m.table(k.Kind).charge(k.Key, now, k.Rule, m.max)
	}
	return 0, nil
}

// Refund implements [ThrottleStore].
func (m *MemoryThrottle) Refund(_ context.Context, _ time.Time, keys []ThrottleKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.table(k.Kind).refund(k.Key, k.Rule)
	}
	return nil
}

// Reset implements [ThrottleStore].
func (m *MemoryThrottle) Reset(_ context.Context, keys []ThrottleKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		t := m.table(k.Kind)
		if c := t.entries[k.Key]; c != nil {
			t.remove(c)
		}
	}
	return nil
}

// DeviceKey implements [ThrottleStore].
func (m *MemoryThrottle) DeviceKey(context.Context) ([]byte, error) { return m.key, nil }

// Len returns how many keys of kind are tracked.
func (m *MemoryThrottle) Len(kind string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.table(kind).entries)
}

// expire drops entries whose last failure is older than window. Both lists
// are ordered by last failure, so they are found at the fronts.
func (t *throttleTable) expire(now time.Time, window time.Duration) {
	for _, l := range []*list.List{&t.cold, &t.hot} {
		for el := l.Front(); el != nil; el = l.Front() {
			c := el.Value.(*counter)
			if now.Sub(c.last) <= window || now.Before(c.blockedUntil) {
				break
			}
			t.remove(c)
		}
	}
}

// wait is how long an attempt on key must wait: its own block, or, for a
// new key in a full table with no entry that may be evicted, until the
// oldest blocked entry unblocks.
func (t *throttleTable) wait(key string, now time.Time, maxEntries int) time.Duration {
	if c := t.entries[key]; c != nil {
		if now.Before(c.blockedUntil) {
			return c.blockedUntil.Sub(now)
		}
		return 0
	}
	if victim := t.evictable(now, maxEntries); victim == nil && len(t.entries) >= maxEntries {
		front := t.hot.Front().Value.(*counter)
		return max(front.blockedUntil.Sub(now), time.Second)
	}
	return 0
}

// evictable returns the entry to drop to make room, nil when there is room
// or nothing may go: the coldest entry, else the oldest hot one if its
// block has passed.
func (t *throttleTable) evictable(now time.Time, maxEntries int) *counter {
	if len(t.entries) < maxEntries {
		return nil
	}
	if el := t.cold.Front(); el != nil {
		return el.Value.(*counter)
	}
	if el := t.hot.Front(); el != nil && !now.Before(el.Value.(*counter).blockedUntil) {
		return el.Value.(*counter)
	}
	return nil
}

func (t *throttleTable) charge(key string, now time.Time, rule ThrottleConfig, maxEntries int) {
	c := t.entries[key]
	if c == nil {
		if victim := t.evictable(now, maxEntries); victim != nil {
			t.remove(victim)
		}
		c = &counter{key: key}
		t.entries[key] = c
	} else {
		t.unlink(c)
	}
	if now.Sub(c.last) > rule.Window {
		c.failures = 0
	}
	c.failures++
	c.last = now
	if d := rule.Delay(c.failures); d > 0 {
		c.blockedUntil = now.Add(d)
	}
	c.hot = c.failures >= rule.FreeFailures
	t.link(c, false)
}

func (t *throttleTable) refund(key string, rule ThrottleConfig) {
	c := t.entries[key]
	if c == nil {
		return // reset by a success or expired meanwhile
	}
	c.failures--
	if c.failures <= 0 {
		t.remove(c)
		return
	}
	t.unlink(c)
	if c.failures < rule.FreeFailures {
		c.blockedUntil = time.Time{}
		c.hot = false
	} else {
		c.blockedUntil = c.last.Add(rule.Delay(c.failures))
	}
	// Kept in place by age as far as the lists allow: a refunded entry is
	// no younger than its last charge, so it goes first in line.
	t.link(c, true)
}

func (t *throttleTable) link(c *counter, front bool) {
	l := &t.cold
	if c.hot {
		l = &t.hot
	}
	if front {
		c.el = l.PushFront(c)
	} else {
		c.el = l.PushBack(c)
	}
}

func (t *throttleTable) unlink(c *counter) {
	if c.hot {
		t.hot.Remove(c.el)
	} else {
		t.cold.Remove(c.el)
	}
}

func (t *throttleTable) remove(c *counter) {
	t.unlink(c)
	delete(t.entries, c.key)
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
