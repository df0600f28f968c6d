package memaccounts

import (
	"container/list"
	"context"
	"crypto/rand"
	"sync"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
)

// DefaultMaxThrottleEntries is the size of each table of a [Throttle]
// (accounts, devices, client IPs) when [NewThrottle] is given none.
const DefaultMaxThrottleEntries = 50_000

// Throttle is the in-process [accounts.ThrottleStore]: one bounded table per
// kind of key. Blocked entries are never evicted to make room while an
// unblocked one could go instead; when a table is full of blocked entries,
// a new key is refused (throttled) until one of them unblocks, so flooding
// the table with fresh names or addresses cannot free a blocked account.
type Throttle struct {
	mu     sync.Mutex
	max    int
	tables map[string]*throttleTable
	key    []byte
}

// NewThrottle returns a Throttle whose tables hold at most maxEntries keys
// each (DefaultMaxThrottleEntries when <= 0). It counts for one process:
// gateway nodes that share their accounts share redisaccounts.NewThrottle
// or pgaccounts.NewThrottle instead. Its device key is random: known
// devices are forgotten when the process restarts.
func NewThrottle(maxEntries int) *Throttle {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxThrottleEntries
	}
	return &Throttle{max: maxEntries, tables: make(map[string]*throttleTable), key: []byte(rand.Text() + rand.Text())[:32]}
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

func (m *Throttle) table(kind string) *throttleTable {
	t := m.tables[kind]
	if t == nil {
		t = &throttleTable{entries: make(map[string]*counter)}
		m.tables[kind] = t
	}
	return t
}

// Begin implements [accounts.ThrottleStore].
func (m *Throttle) Begin(_ context.Context, now time.Time, keys []accounts.ThrottleKey) (time.Duration, error) {
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

// Refund implements [accounts.ThrottleStore].
func (m *Throttle) Refund(_ context.Context, _ time.Time, keys []accounts.ThrottleKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.table(k.Kind).refund(k.Key, k.Rule)
	}
	return nil
}

// Reset implements [accounts.ThrottleStore].
func (m *Throttle) Reset(_ context.Context, keys []accounts.ThrottleKey) error {
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

// DeviceKey implements [accounts.ThrottleStore].
func (m *Throttle) DeviceKey(context.Context) ([]byte, error) { return m.key, nil }

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

func (t *throttleTable) charge(key string, now time.Time, rule accounts.ThrottleConfig, maxEntries int) {
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

func (t *throttleTable) refund(key string, rule accounts.ThrottleConfig) {
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
