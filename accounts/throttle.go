package accounts

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// ThrottleConfig sets how failed logins slow down further attempts for one
// key (an account or a client IP). The first FreeFailures failures within
// Window cost nothing; after that each failure makes the next attempt wait
// BaseDelay, then twice as long, and so on up to MaxDelay. Attempts made
// while waiting are refused without being counted, so they cannot extend
// the wait: a victim can always log in once MaxDelay has passed since the
// attacker's last counted failure. Zero fields take the defaults given in
// [Config].
type ThrottleConfig struct {
	FreeFailures int
	BaseDelay    time.Duration
	MaxDelay     time.Duration
	// Window is how long a key's failures are remembered after its last
	// failure. It is raised to MaxDelay if shorter.
	Window time.Duration
}

// Defaults for [Config.AccountThrottle] and [Config.IPThrottle].
var (
	defaultAccountThrottle = ThrottleConfig{FreeFailures: 5, BaseDelay: time.Second, MaxDelay: 5 * time.Minute, Window: time.Hour}
	defaultIPThrottle      = ThrottleConfig{FreeFailures: 20, BaseDelay: time.Second, MaxDelay: 15 * time.Minute, Window: time.Hour}
)

const defaultMaxThrottleEntries = 50_000

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

// delay is the wait imposed after the failure that brought a key's count to
// FreeFailures+extra.
func (c ThrottleConfig) delay(extra int) time.Duration {
	d := c.BaseDelay
	for ; extra > 0 && d < c.MaxDelay; extra-- {
		d *= 2
	}
	return min(d, c.MaxDelay)
}

// throttle tracks failures per account and per client IP. Both tables are
// checked and charged under one lock, so concurrent attempts cannot slip
// past a limit together.
type throttle struct {
	mu      sync.Mutex
	account throttleTable
	ip      throttleTable
}

// throttleTable is a bounded map of counters kept in least-recently-charged
// order, so expired entries are found at the front and, when the table is
// full, the stalest entry is evicted.
type throttleTable struct {
	cfg     ThrottleConfig
	max     int
	entries map[string]*list.Element // value: *counter
	order   list.List
}

type counter struct {
	key          string
	failures     int
	last         time.Time // when the last failure was charged
	blockedUntil time.Time
}

// counterState is a counter's value before and after an attempt charged it,
// so the charge can be refunded when the attempt ends without a verdict.
type counterState struct {
	failures     int
	last         time.Time
	blockedUntil time.Time
}

// attempt is one login attempt that passed the throttle and was charged as
// a failure in advance; succeed or refund settles it.
type attempt struct {
	accountKey, ipKey           string
	accountBefore, accountAfter counterState
	ipBefore, ipAfter           counterState
}

func newThrottle(account, ip ThrottleConfig, maxEntries int) *throttle {
	t := &throttle{}
	t.account = throttleTable{cfg: account, max: maxEntries, entries: make(map[string]*list.Element)}
	t.ip = throttleTable{cfg: ip, max: maxEntries, entries: make(map[string]*list.Element)}
	return t
}

// begin refuses the attempt with a *ThrottledError if either key must still
// wait; otherwise it charges both keys with a failure, which [throttle.succeed]
// clears. Charging first means a burst of concurrent guesses is limited as
// if they had come one after another.
func (t *throttle) begin(now time.Time, accountKey, ipKey string) (attempt, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.account.expire(now)
	t.ip.expire(now)
	if wait := max(t.account.wait(accountKey, now), t.ip.wait(ipKey, now)); wait > 0 {
		return attempt{}, &ThrottledError{RetryAfter: wait}
	}
	a := attempt{accountKey: accountKey, ipKey: ipKey}
	a.accountBefore, a.accountAfter = t.account.charge(accountKey, now)
	a.ipBefore, a.ipAfter = t.ip.charge(ipKey, now)
	return a, nil
}

// succeed forgets the failures of the attempt's account and client IP.
func (t *throttle) succeed(a attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.account.remove(a.accountKey)
	t.ip.remove(a.ipKey)
}

// refund takes back the charge of an attempt that ended without checking
// the password (store error, server busy, cancelled request).
func (t *throttle) refund(a attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.account.refund(a.accountKey, a.accountBefore, a.accountAfter)
	t.ip.refund(a.ipKey, a.ipBefore, a.ipAfter)
}

func (tt *throttleTable) expire(now time.Time) {
	for el := tt.order.Front(); el != nil; el = tt.order.Front() {
		if now.Sub(el.Value.(*counter).last) <= tt.cfg.Window {
			return
		}
		tt.removeElement(el)
	}
}

func (tt *throttleTable) wait(key string, now time.Time) time.Duration {
	el := tt.entries[key]
	if el == nil {
		return 0
	}
	if until := el.Value.(*counter).blockedUntil; now.Before(until) {
		return until.Sub(now)
	}
	return 0
}

func (tt *throttleTable) charge(key string, now time.Time) (before, after counterState) {
	el := tt.entries[key]
	if el == nil {
		if len(tt.entries) >= tt.max {
			tt.removeElement(tt.order.Front())
		}
		el = tt.order.PushBack(&counter{key: key})
		tt.entries[key] = el
	} else {
		tt.order.MoveToBack(el)
	}
	c := el.Value.(*counter)
	before = c.state()
	if now.Sub(c.last) > tt.cfg.Window {
		c.failures = 0
	}
	c.failures++
	c.last = now
	if c.failures >= tt.cfg.FreeFailures {
		c.blockedUntil = now.Add(tt.cfg.delay(c.failures - tt.cfg.FreeFailures))
	}
	return before, c.state()
}

func (tt *throttleTable) refund(key string, before, after counterState) {
	el := tt.entries[key]
	if el == nil {
		return // reset by a success or evicted meanwhile
	}
	c := el.Value.(*counter)
	switch {
	case c.state() != after:
		// Other attempts charged the key since: take back one failure and
		// leave their delay in place.
		c.failures = max(c.failures-1, 0)
	case before.failures == 0:
		tt.removeElement(el)
	default:
		c.failures, c.last, c.blockedUntil = before.failures, before.last, before.blockedUntil
	}
}

func (tt *throttleTable) remove(key string) {
	if el := tt.entries[key]; el != nil {
		tt.removeElement(el)
	}
}

func (tt *throttleTable) removeElement(el *list.Element) {
	delete(tt.entries, el.Value.(*counter).key)
	tt.order.Remove(el)
}

func (c *counter) state() counterState {
	return counterState{failures: c.failures, last: c.last, blockedUntil: c.blockedUntil}
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
