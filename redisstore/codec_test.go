package redisstore

import (
	"bytes"
	"encoding/hex"
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
		got.IP != want.IP || got.UserAgent != want.UserAgent || string(got.Data) != string(want.Data) || got.Epoch != want.Epoch {
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
	mapped.Epoch = 1
	zero := cloakroom.Record{Key: cloakroom.Key{9}, Version: 1}
	huge := typicalRecord("carol", now)
	huge.Epoch = 1<<64 - 1
	for _, rec := range []cloakroom.Record{typical, odd, mapped, zero, huge} {
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

// TestCompactReadsRecordsWithoutEpoch decodes a record as the encoder
// wrote it before sessions had an epoch (the bytes are that encoder's
// output): it reads as epoch 0, and a record of epoch 0 is still written
// the same way, so the scripts read both alike.
func TestCompactReadsRecordsWithoutEpoch(t *testing.T) {
	const before = "020e090703058089fee0b5d9b00680aaea55a03880c60a10000102030405060708090a0b0c0d0e0f04c00002010b4d6f7a696c6c612f352e300676616c756573"
	now := time.Date(2026, 11, 29, 8, 0, 0, 123456000, time.UTC)
	rec := cloakroom.Record{Key: cloakroom.Key{31: 7, 30: 9, 0: 1}, Handle: "AAECAwQFBgcICQoLDA0ODw", UserID: "alice", Generation: 3, Version: 5,
		CreatedAt: now, LastSeen: now.Add(90 * time.Second), IdleTimeout: time.Hour, AbsoluteDeadline: now.Add(24 * time.Hour),
		IP: "192.0.2.1", UserAgent: "Mozilla/5.0", Data: []byte("values")}
	b, err := hex.DecodeString(before)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCompact(b, rec.Key, rec.UserID)
	if err != nil {
		t.Fatal(err)
	}
	sameCompact(t, got, rec)
	if again := hex.EncodeToString(encodeCompact(nil, &rec)); again != before {
		t.Fatalf("a record of epoch 0 encodes as %s, want %s", again, before)
	}
	rec.Epoch = 2
	if n, m := len(encodeCompact(nil, &rec)), len(b); n != m+1 {
		t.Fatalf("epoch 2 takes %d bytes more, want 1", n-m)
	}
}

func FuzzDecodeCompact(f *testing.F) {
	rec := typicalRecord("alice", time.Now())
	f.Add(encodeCompact(nil, &rec), "alice")
	f.Add([]byte{compactFormat, 0xff}, "")
	rec.Epoch = 300
	f.Add(encodeCompact(nil, &rec), "alice")
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

// TestAuxRoundTrip encodes auxiliary records of every shape and decodes
// them back (expiry to the microsecond).
func TestAuxRoundTrip(t *testing.T) {
	expires := time.Date(2026, 11, 29, 8, 0, 0, 123456000, time.UTC)
	key := cloakroom.AuxKey("redisstore", "test", "a")
	for _, rec := range []cloakroom.AuxRecord{
		{Key: key, Version: 1, Expires: expires, Data: []byte("tokens")},
		{Key: key, Version: 1 << 40, Expires: expires, EndsWithSessions: true, Epoch: 7},
		{Key: key, Version: 2, Expires: time.UnixMicro(-5), EndsWithSessions: true, Data: []byte{0}},
	} {
		got, err := decodeAux(encodeAux(&rec), key)
		if err != nil {
			t.Fatalf("%+v: %v", rec, err)
		}
		sameAux(t, got, rec)
	}
	// The epoch of a record that does not end with the sessions means
	// nothing and is not kept.
	loose := cloakroom.AuxRecord{Key: key, Version: 1, Expires: expires, Epoch: 3}
	if got, _ := decodeAux(encodeAux(&loose), key); got.Epoch != 0 {
		t.Fatalf("a loose record kept epoch %d", got.Epoch)
	}
}

func sameAux(t *testing.T, got, want cloakroom.AuxRecord) {
	t.Helper()
	if got.Key != want.Key || got.Version != want.Version || !got.Expires.Equal(want.Expires) ||
		got.EndsWithSessions != want.EndsWithSessions || got.Epoch != want.Epoch || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

func FuzzDecodeAux(f *testing.F) {
	rec := cloakroom.AuxRecord{Version: 3, Expires: time.Now(), EndsWithSessions: true, Epoch: 2, Data: []byte("data")}
	f.Add(encodeAux(&rec))
	f.Add([]byte{auxFormat, 0})
	f.Add([]byte{auxFormat, 2, 1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		key := cloakroom.Key{4, 5, 6}
		got, err := decodeAux(b, key)
		if err != nil {
			return
		}
		if !got.EndsWithSessions {
			got.Epoch = 0 // not kept, see TestAuxRoundTrip
		}
		// Whatever decodes encodes to a form that decodes the same.
		again, err := decodeAux(encodeAux(&got), key)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", got, err)
		}
		sameAux(t, again, got)
	})
}
