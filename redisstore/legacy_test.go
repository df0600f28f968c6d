package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/storetest"
)

// TestUpgradeFromLegacyLayout writes sessions in the first key layout, as
// a gateway of an earlier version did, and checks that a Store of this
// version finds, updates, lists, revokes and deletes them, and that one
// told to ignore that layout does not see them.
func TestUpgradeFromLegacyLayout(t *testing.T) {
	ctx := context.Background()
	old, s, client, prefix := twoNodes(t)
	ignoring := newTestStore(t, client, Config{Prefix: prefix, IgnoreLegacyLayout: true})

	now := time.Now()
	anon := storetest.NewRecord("", now)
	a, b := storetest.NewRecord("vera", now), storetest.NewRecord("vera", now.Add(time.Millisecond))
	for _, rec := range []cloakroom.Record{anon, a, b} {
		if err := old.legacyCommit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, found, _ := s.Find(ctx, a.Key); !found {
		t.Fatal("a session of the first layout is not found")
	}
	if _, found, err := ignoring.Find(ctx, a.Key); err != nil || found {
		t.Fatalf("a store ignoring the first layout finds its session: %v, %v", found, err)
	}

	// Updates stay where the session is; a fresh session of the same
	// user goes to the compact layout, and List shows all of them.
	for _, rec := range []*cloakroom.Record{&anon, &a} {
		rec.Version, rec.Data = 2, []byte("updated")
		if err := s.Commit(ctx, *rec); err != nil {
			t.Fatalf("updating a session of the first layout: %v", err)
		}
		got, found, err := s.Find(ctx, rec.Key)
		if err != nil || !found || got.Version != 2 || string(got.Data) != "updated" {
			t.Fatalf("after the update Find = v%d %q, %v, %v", got.Version, got.Data, found, err)
		}
		stale := *rec
		if err := s.Commit(ctx, stale); !errors.Is(err, cloakroom.ErrConflict) {
			t.Fatalf("a stale update of a session of the first layout: %v, want ErrConflict", err)
		}
	}
	fresh := storetest.NewRecord("vera", now.Add(2*time.Millisecond))
	if err := s.Commit(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "vera")
	if err != nil || len(list) != 3 || list[0].Key != a.Key || list[1].Key != b.Key || list[2].Key != fresh.Key {
		t.Fatalf("List = %d sessions, %v; want the two old ones then the new one", len(list), err)
	}

	// Delete and BumpGeneration reach both layouts.
	if err := s.Delete(ctx, anon.Key); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a.Key); err != nil {
		t.Fatal(err)
	}
	for _, key := range []cloakroom.Key{anon.Key, a.Key} {
		if _, found, err := s.Find(ctx, key); err != nil || found {
			t.Fatalf("deleted session of the first layout: found=%v, %v", found, err)
		}
	}
	if _, err := s.BumpGeneration(ctx, "vera"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []cloakroom.Key{b.Key, fresh.Key} {
		if _, found, err := s.Find(ctx, key); err != nil || found {
			t.Fatalf("revoked session: found=%v, %v", found, err)
		}
	}
	for _, k := range []string{s.legacySessionKey("vera", b.Key.String()), s.legacyIndexKey("vera"), s.legacyLookupKey(b.Key.String()),
		s.legacyLookupKey(a.Key.String()), s.legacyLookupKey(anon.Key.String())} {
		if n, err := client.Do(ctx, client.B().Exists().Key(k).Build()).AsInt64(); err != nil || n != 0 {
			t.Fatalf("key %q of the first layout left after Delete and BumpGeneration (%d, %v)", k, n, err)
		}
	}
}

// TestRotateLegacyChecksOldVersion: a renewal of a session of the first
// layout, a user's (rotateScript) or an anonymous one (consume), carries
// its values over only from the version the session is at.
func TestRotateLegacyChecksOldVersion(t *testing.T) {
	ctx := context.Background()
	old, s, _, _ := twoNodes(t)
	now := time.Now()
	for _, rec := range []cloakroom.Record{storetest.NewRecord("", now), storetest.NewRecord("vera", now)} {
		if err := old.legacyCommit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		rec.Version, rec.Data = 2, []byte("removed")
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		stale := storetest.NewRecord(rec.UserID, now)
		_, err := s.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, OldVersion: 1, New: stale})
		if !errors.Is(err, cloakroom.ErrConflict) {
			t.Fatalf("user %q: rotating from version 1 of a session at version 2: %v, want ErrConflict", rec.UserID, err)
		}
		if _, found, err := s.Find(ctx, stale.Key); err != nil || found {
			t.Fatalf("user %q: a refused rotation created its session: %v, %v", rec.UserID, found, err)
		}
		if got, found, err := s.Find(ctx, rec.Key); err != nil || !found || got.Version != 2 {
			t.Fatalf("user %q: after a refused rotation the old session is v%d, %v, %v; want v2", rec.UserID, got.Version, found, err)
		}
		next := storetest.NewRecord(rec.UserID, now)
		if _, err := s.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, OldVersion: 2, New: next}); err != nil {
			t.Fatalf("user %q: rotating from the current version: %v", rec.UserID, err)
		}
		if _, found, err := s.Find(ctx, rec.Key); err != nil || found {
			t.Fatalf("user %q: the rotated session lives on: %v, %v", rec.UserID, found, err)
		}
	}
}
