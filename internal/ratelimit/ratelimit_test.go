package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

func TestKeyedBucketsAreSeparateAndRefill(t *testing.T) {
	k := NewKeyed(16, Rate{PerSec: 2, Burst: 3})
	for i := range 3 {
		if !k.Allow("a", t0) {
			t.Fatalf("a's request %d refused within the burst", i)
		}
	}
	if k.Allow("a", t0) {
		t.Error("a went past its burst")
	}
	if !k.Allow("b", t0) {
		t.Error("a's flood refused b")
	}
	if !k.Allow("a", t0.Add(500*time.Millisecond)) || k.Allow("a", t0.Add(500*time.Millisecond)) {
		t.Error("half a second at 2/s should give a exactly one more")
	}
	k.Charge("b", 10, t0) // into debt: 2 - 10 = -8, 4.5 s at 2/s to be back at 1
	if k.Allow("b", t0.Add(4*time.Second)) {
		t.Error("b let in while in debt")
	}
	if !k.Allow("b", t0.Add(5*time.Second)) {
		t.Error("b not let in once the debt was paid")
	}
}

func TestKeyedTableIsBounded(t *testing.T) {
	k := NewKeyed(100, Rate{PerSec: 1, Burst: 1})
	if !k.Allow("first", t0) || k.Allow("first", t0) {
		t.Fatal("burst of one")
	}
	for i := range 1000 {
		k.Allow(fmt.Sprint(i), t0)
	}
	if k.Len() != 100 {
		t.Errorf("table holds %d keys, want 100", k.Len())
	}
	// "first" was the least recently used: forgotten, back with a full bucket.
	if !k.Allow("first", t0) {
		t.Error("an evicted key did not come back with a full bucket")
	}
}

func TestSingle(t *testing.T) {
	s := NewSingle(Rate{PerSec: 1, Burst: 2})
	if !s.Allow(t0) || !s.Allow(t0) || s.Allow(t0) {
		t.Error("burst of two")
	}
	if !s.Allow(t0.Add(time.Second)) {
		t.Error("no refill after a second")
	}
	s.Charge(3, t0.Add(time.Second))
	if s.Allow(t0.Add(3 * time.Second)) {
		t.Error("let in while in debt")
	}
}

func TestClientKey(t *testing.T) {
	for ip, want := range map[string]string{
		"203.0.113.5":          "203.0.113.5",
		"::ffff:203.0.113.5":   "203.0.113.5",
		"2001:db8:1:2::1":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
		"fe80::1%eth0":         "fe80::/64",
		"not an address":       "not an address",
	} {
		if got := ClientKey(ip); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", ip, got, want)
		}
	}
}
