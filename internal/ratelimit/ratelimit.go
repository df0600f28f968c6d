// Package ratelimit holds token buckets for endpoints anyone can call: one
// bucket, and a table of buckets keyed by client whose size is fixed, so
// that an attacker with many addresses cannot grow memory. Time comes from
// the caller, so tests move it by hand.
package ratelimit

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Rate is a bucket's refill per second and its size (the burst).
type Rate struct {
	PerSec, Burst float64
}

// Bucket is a token bucket that may go into debt: a request is let in
// while the bucket holds a token, and may then pay for more than one (see
// Charge). The zero Bucket is full at its first use. It is not safe for
// concurrent use on its own; Single and Keyed lock it.
type Bucket struct {
	tokens  float64
	last    time.Time
	started bool
}

func (b *Bucket) refill(now time.Time, r Rate) {
	if !b.started {
		b.tokens, b.last, b.started = r.Burst, now, true
		return
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(r.Burst, b.tokens+elapsed*r.PerSec)
		b.last = now
	}
}

// take takes one token if there is one.
func (b *Bucket) take(now time.Time, r Rate) bool {
	b.refill(now, r)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Single is one bucket, safe for concurrent use.
type Single struct {
	mu   sync.Mutex
	rate Rate
	b    Bucket
}

// NewSingle returns a full bucket of rate r.
func NewSingle(r Rate) *Single { return &Single{rate: r} }

// Allow takes a token at now, or reports that there is none.
func (s *Single) Allow(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.take(now, s.rate)
}

// Charge takes n more tokens, into debt if need be.
func (s *Single) Charge(n int, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.refill(now, s.rate)
	s.b.tokens -= float64(n)
}

// Keyed is one bucket per key in a table of at most size keys, safe for
// concurrent use. When the table is full, the key used least recently is
// forgotten: it comes back with a full bucket, so a caller bounds what
// many keys together may do with a Single beside it.
type Keyed struct {
	mu    sync.Mutex
	rate  Rate
	size  int
	index map[string]*list.Element // of *entry
	order *list.List               // most recently used first
}

type entry struct {
	key string
	b   Bucket
}

// NewKeyed returns a table of at most size buckets of rate r (size at
// least 1).
func NewKeyed(size int, r Rate) *Keyed {
	size = max(1, size)
	return &Keyed{rate: r, size: size, index: make(map[string]*list.Element, size), order: list.New()}
}

// Allow takes a token from key's bucket at now, or reports that it has
// none.
func (k *Keyed) Allow(key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.bucket(key).take(now, k.rate)
}

// Charge takes n more tokens from key's bucket, into debt if need be.
func (k *Keyed) Charge(key string, n int, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.bucket(key)
	b.refill(now, k.rate)
	b.tokens -= float64(n)
}

// Len is how many keys the table holds.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.order.Len()
}

func (k *Keyed) bucket(key string) *Bucket {
	if e, ok := k.index[key]; ok {
		k.order.MoveToFront(e)
		return &e.Value.(*entry).b
	}
	if k.order.Len() >= k.size {
		oldest := k.order.Back()
		k.order.Remove(oldest)
		delete(k.index, oldest.Value.(*entry).key)
	}
	e := &entry{key: key}
	k.index[key] = k.order.PushFront(e)
	return &e.b
}

// ClientKey is the key of a client address for a Keyed table: the address
// itself, an IPv4-mapped one as IPv4, and an IPv6 address by its /64, the
// block one subscriber usually holds whole (else an attacker with one
// block has 2^64 fresh budgets). A string that is no address is its own
// key.
func ClientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is6() {
		prefix, _ := addr.WithZone("").Prefix(64)
		return prefix.String()
	}
	return addr.String()
}
