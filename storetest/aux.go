package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// auxTests check the auxiliary records: versioned, expiring, in a key
// space of their own, and unseen by anything that deals with sessions.
var auxTests = []struct {
	name string
	fn   func(t *testing.T, s cloakroom.Store, c *Clock)
}{
	{"AuxCreateFindUpdateDelete", testAuxLifecycle},
	{"AuxCreateTwiceConflicts", testAuxCreateTwice},
	{"AuxStaleVersionConflicts", testAuxStaleVersion},
	{"AuxExpiry", testAuxExpiry},
	{"AuxIsNotASession", testAuxIsNotASession},
	{"AuxOutlivesEpochBump", testAuxOutlivesEpochBump},
	{"AuxEndsWithSessions", testAuxEndsWithSessions},
	{"AuxConcurrentUpdates", testAuxConcurrentUpdates},
}

func newAux(id string, now time.Time) cloakroom.AuxRecord {
	return cloakroom.AuxRecord{
		Key: cloakroom.AuxKey("storetest", "kind", id+uniqueUser("")), Version: 1,
		Expires: now.Add(time.Hour), Data: []byte("aux " + id),
	}
}

func mustCommitAux(t *testing.T, s cloakroom.Store, rec cloakroom.AuxRecord) {
	t.Helper()
	if err := s.CommitAux(context.Background(), rec); err != nil {
		t.Fatalf("CommitAux(version %d): %v", rec.Version, err)
	}
}

func findAux(t *testing.T, s cloakroom.Store, key cloakroom.Key) (cloakroom.AuxRecord, bool) {
	t.Helper()
	rec, found, err := s.FindAux(context.Background(), key)
	if err != nil {
		t.Fatalf("FindAux: %v", err)
	}
	return rec, found
}

func sameAux(t *testing.T, got, want cloakroom.AuxRecord) {
	t.Helper()
	switch {
	case got.Key != want.Key:
		t.Errorf("Key = %s, want %s", got.Key.Short(), want.Key.Short())
	case got.Version != want.Version:
		t.Errorf("Version = %d, want %d", got.Version, want.Version)
	case !got.Expires.Truncate(time.Millisecond).Equal(want.Expires.Truncate(time.Millisecond)):
		t.Errorf("Expires = %v, want %v", got.Expires, want.Expires)
	case got.EndsWithSessions != want.EndsWithSessions:
		t.Errorf("EndsWithSessions = %v, want %v", got.EndsWithSessions, want.EndsWithSessions)
	case want.EndsWithSessions && got.Epoch != want.Epoch:
		t.Errorf("Epoch = %d, want %d", got.Epoch, want.Epoch)
	case !bytes.Equal(got.Data, want.Data):
		t.Errorf("Data = %q, want %q", got.Data, want.Data)
	}
}

func testAuxLifecycle(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	rec := newAux("a", c.Now())
	if _, found := findAux(t, s, rec.Key); found {
		t.Fatal("FindAux before the create: found")
	}
	mustCommitAux(t, s, rec)
	got, found := findAux(t, s, rec.Key)
	if !found {
		t.Fatal("FindAux after the create: not found")
	}
	sameAux(t, got, rec)
	rec.Version, rec.Data = 2, []byte("updated")
	mustCommitAux(t, s, rec)
	got, _ = findAux(t, s, rec.Key)
	sameAux(t, got, rec)
	if err := s.DeleteAux(ctx, rec.Key); err != nil {
		t.Fatal(err)
	}
	if _, found := findAux(t, s, rec.Key); found {
		t.Fatal("FindAux after the delete: found")
	}
	if err := s.DeleteAux(ctx, rec.Key); err != nil {
		t.Fatalf("DeleteAux of a missing record: %v", err)
	}
	rec.Version = 3
	wantNotFound(t, s.CommitAux(ctx, rec), "update of a deleted record")
}

func testAuxCreateTwice(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := newAux("a", c.Now())
	mustCommitAux(t, s, rec)
	other := rec
	other.Data = []byte("second")
	wantConflict(t, s.CommitAux(context.Background(), other), "second create")
	got, _ := findAux(t, s, rec.Key)
	sameAux(t, got, rec)
}

func testAuxStaleVersion(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := newAux("a", c.Now())
	mustCommitAux(t, s, rec)
	rec.Version = 2
	mustCommitAux(t, s, rec)
	stale := rec // another writer read version 1
	stale.Version, stale.Data = 2, []byte("stale")
	wantConflict(t, s.CommitAux(context.Background(), stale), "stale update")
	got, _ := findAux(t, s, rec.Key)
	sameAux(t, got, rec)
}

func testAuxExpiry(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := newAux("a", c.Now())
	rec.Expires = c.Now().Add(10 * time.Minute)
	mustCommitAux(t, s, rec)
	c.Advance(9 * time.Minute)
	if _, found := findAux(t, s, rec.Key); !found {
		t.Fatal("record gone before its expiry")
	}
	c.Advance(time.Minute)
	if _, found := findAux(t, s, rec.Key); found {
		t.Fatal("record found at its expiry")
	}
	rec.Version = 2
	wantNotFound(t, s.CommitAux(context.Background(), rec), "update of an expired record")
	// An expired record's key can be created again.
	again := rec
	again.Version, again.Expires = 1, c.Now().Add(time.Minute)
	mustCommitAux(t, s, again)
}

// testAuxIsNotASession: a record and a session under the same key do not
// see each other, and records never appear as sessions.
func testAuxIsNotASession(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	sess := NewRecord(uniqueUser("alice"), c.Now())
	rec := newAux("a", c.Now())
	rec.Key = sess.Key
	mustCommitAux(t, s, rec)
	mustNotFind(t, s, rec.Key)
	mustCommit(t, s, sess)
	got, found := findAux(t, s, rec.Key)
	if !found {
		t.Fatal("record gone after a session was created under its key")
	}
	sameAux(t, got, rec)
	mustList(t, s, sess.UserID, "beside an auxiliary record of the same key", sess.Key)
	mustDelete(t, s, sess.Key)
	if _, found := findAux(t, s, rec.Key); !found {
		t.Fatal("deleting a session deleted the record under its key")
	}
	if err := s.DeleteAux(ctx, rec.Key); err != nil {
		t.Fatal(err)
	}
	again := NewRecord(sess.UserID, c.Now())
	mustCommit(t, s, again)
	mustList(t, s, sess.UserID, "after DeleteAux", again.Key)
}

func testAuxOutlivesEpochBump(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := newAux("tombstone", c.Now())
	mustCommitAux(t, s, rec)
	bumpEpoch(t, s, 1)
	got, found := findAux(t, s, rec.Key)
	if !found {
		t.Fatal("a record that does not end with the sessions was ended by the epoch bump")
	}
	sameAux(t, got, rec)
	rec.Version = 2
	mustCommitAux(t, s, rec)
}

func testAuxEndsWithSessions(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	rec := newAux("tokens", c.Now())
	rec.EndsWithSessions = true
	mustCommitAux(t, s, rec)
	got, found := findAux(t, s, rec.Key)
	if !found {
		t.Fatal("not found after the create")
	}
	sameAux(t, got, rec)
	bumpEpoch(t, s, 1)
	if _, found := findAux(t, s, rec.Key); found {
		t.Fatal("a record that ends with the sessions outlived the epoch bump")
	}
	rec.Version = 2
	wantNotFound(t, s.CommitAux(ctx, rec), "update of a record of a past epoch")
	late := newAux("late", c.Now()) // its creator read the epoch before the bump
	late.EndsWithSessions = true
	wantNotFound(t, s.CommitAux(ctx, late), "create at a past epoch")
	fresh := newAux("fresh", c.Now())
	fresh.EndsWithSessions, fresh.Epoch = true, 1
	mustCommitAux(t, s, fresh)
	got, found = findAux(t, s, fresh.Key)
	if !found {
		t.Fatal("a record of the new epoch is not found")
	}
	sameAux(t, got, fresh)
}

// testAuxConcurrentUpdates: writers that read, change and write back with
// retries on conflict lose no update.
func testAuxConcurrentUpdates(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	rec := newAux("counter", c.Now())
	rec.Data = nil
	mustCommitAux(t, s, rec)
	const writers, each = 4, 5
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				for {
					cur, found, err := s.FindAux(ctx, rec.Key)
					if err != nil || !found {
						t.Errorf("FindAux: %v, found %v", err, found)
						return
					}
					cur.Version++
					cur.Data = append(append([]byte(nil), cur.Data...), 'x')
					err = s.CommitAux(ctx, cur)
					if err == nil {
						break
					}
					if !errors.Is(err, cloakroom.ErrConflict) {
						t.Errorf("CommitAux: %v", err)
						return
					}
					conflicts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	got, _ := findAux(t, s, rec.Key)
	if len(got.Data) != writers*each || got.Version != 1+writers*each {
		t.Fatalf("after %d updates: %d bytes at version %d (%d conflicts); want %d at %d",
			writers*each, len(got.Data), got.Version, conflicts.Load(), writers*each, 1+writers*each)
	}
}
