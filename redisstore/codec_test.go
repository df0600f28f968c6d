package redisstore

import (
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/storetest"
)

func sameCompact(t *testing.T, got, want cloakroom.Record) {
	t.Helper()
	eq := func(a, b time.Time) bool { return a.Equal(b) }
	if got.Key != want.Key || got.UserID != want.UserID || got.Handle != want.Handle || got.Generation != want.Generation ||
		got.Version != want.Version || !eq(got.CreatedAt, want.CreatedAt) || !eq(got.LastSeen, want.LastSeen) ||
		got.IdleTimeout != want.IdleTimeout || !eq(got.AbsoluteDeadline, want.AbsoluteDeadline) || got.Persistent != want.Persistent ||
		got.IP != want.IP || got.UserAgent != want.UserAgent || string(got.Data) != string(want.Data) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

// TestCompactRoundTrip encodes records of every shape and decodes them back
// exactly (times to the microsecond), under the right key only.
func TestCompactRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 29, 8, 0, 0, 123456000, time.UTC)
	typical := typicalRecord("alice", now)
	odd := storetest.NewRecord("", now)
	odd.Handle, odd.IP, odd.UserAgent = "not base64!", "2001:db8::1", ""
	odd.IdleTimeout, odd.Persistent = 1500*time.Microsecond, true
	odd.LastSeen = now.Add(-time.Second) // before creation
	mapped := storetest.NewRecord("bob", now)
	mapped.IP, mapped.Handle = "::ffff:192.0.2.1", ""
	zero := cloakroom.Record{Key: cloakroom.Key{9}, Version: 1}
	for _, rec := range []cloakroom.Record{typical, odd, mapped, zero} {
		b := encodeCompact(nil, &rec)
		got, err := decodeCompact(b, rec.Key, rec.UserID)
		if err != nil {
			t.Fatalf("%+v: %v", rec, err)
		}
		sameCompact(t, got, rec)
		other := rec.Key
		other[31]++
		if _, err := decodeCompact(b, other, rec.UserID); err == nil {
			t.Fatal("a record decoded under another session's key")
		}
	}
	if n := len(encodeCompact(nil, &typical)); n > 108 {
		t.Errorf("a typical record takes %d bytes; above 108 it no longer fits Redis' 112-byte allocation", n)
	}
}

func FuzzDecodeCompact(f *testing.F) {
	rec := typicalRecord("alice", time.Now())
	f.Add(encodeCompact(nil, &rec), "alice")
	f.Add([]byte{compactFormat, 0xff}, "")
	f.Fuzz(func(t *testing.T, b []byte, user string) {
		key := cloakroom.Key{1, 2, 3}
		if len(b) >= 2+keyTailLen {
			copy(key[fieldLen:], b[2:2+keyTailLen])
		}
		got, err := decodeCompact(b, key, user)
		if err != nil {
			return
		}
		// Whatever decodes encodes to a form that decodes the same.
		again, err := decodeCompact(encodeCompact(nil, &got), key, user)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", got, err)
		}
		sameCompact(t, again, got)
	})
}
