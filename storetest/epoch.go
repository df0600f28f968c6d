package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// epochTests check the global revocation: BumpEpoch ends every session of
// every user and every anonymous one, on every path a session is used by.
var epochTests = []struct {
	name string
	fn   func(t *testing.T, s cloakroom.Store, c *Clock)
}{
	{"EpochStartsAtZero", testEpochStartsAtZero},
	{"EpochBumpEndsEverySession", testEpochBumpEndsEverySession},
	{"EpochBumpBlocksStaleWrites", testEpochBumpBlocksStaleWrites},
	{"EpochBumpBlocksRotation", testEpochBumpBlocksRotation},
	{"EpochRotationKeepsEpoch", testEpochRotationKeepsEpoch},
	{"EpochBumpLeavesGenerations", testEpochBumpLeavesGenerations},
	{"EpochBumpRacesLogins", testEpochBumpRacesLogins},
	{"EpochBumpNotifies", testEpochBumpNotifies},
}

func bumpEpoch(t *testing.T, s cloakroom.Store, want uint64) {
	t.Helper()
	ctx := context.Background()
	got, err := s.BumpEpoch(ctx)
	if err != nil || got != want {
		t.Fatalf("BumpEpoch = %d, %v; want %d, nil", got, err, want)
	}
	if got, err := s.Epoch(ctx); err != nil || got != want {
		t.Fatalf("Epoch after the bump = %d, %v; want %d, nil", got, err, want)
	}
}

func testEpochStartsAtZero(t *testing.T, s cloakroom.Store, c *Clock) {
	if e, err := s.Epoch(context.Background()); err != nil || e != 0 {
		t.Fatalf("Epoch(new store) = %d, %v; want 0, nil", e, err)
	}
}

func testEpochBumpEndsEverySession(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	alice, bob := uniqueUser("alice"), uniqueUser("bob")
	a1, a2, b, anon := NewRecord(alice, c.Now()), NewRecord(alice, c.Now()), NewRecord(bob, c.Now()), NewRecord("", c.Now())
	if _, err := s.BumpGeneration(ctx, bob); err != nil {
		t.Fatal(err)
	}
	b.Generation = 1
	for _, rec := range []cloakroom.Record{a1, a2, b, anon} {
		mustCommit(t, s, rec)
		mustFind(t, s, rec.Key) // warm any cache
	}
	bumpEpoch(t, s, 1)
	for _, rec := range []cloakroom.Record{a1, a2, b, anon} {
		mustNotFind(t, s, rec.Key)
	}
	for _, user := range []string{alice, bob} {
		mustList(t, s, user, "after the epoch bump")
	}
	// Sessions created at the new epoch live as usual, anonymous too.
	fresh, freshAnon := NewRecord(alice, c.Now()), NewRecord("", c.Now())
	fresh.Epoch, freshAnon.Epoch = 1, 1
	mustCommit(t, s, fresh)
	mustCommit(t, s, freshAnon)
	sameRecord(t, mustFind(t, s, fresh.Key), fresh)
	sameRecord(t, mustFind(t, s, freshAnon.Key), freshAnon)
	mustList(t, s, alice, "after a login at the new epoch", fresh.Key)
	bumpEpoch(t, s, 2)
	mustNotFind(t, s, fresh.Key)
	mustNotFind(t, s, freshAnon.Key)
}

func testEpochBumpBlocksStaleWrites(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	user := uniqueUser("alice")
	rec, anon := NewRecord(user, c.Now()), NewRecord("", c.Now())
	mustCommit(t, s, rec)
	mustCommit(t, s, anon)
	bumpEpoch(t, s, 1)
	// A request that loaded the session before the bump must not write it
	// back, nor revive it.
	for _, r := range []cloakroom.Record{rec, anon} {
		r.Version = 2
		r.LastSeen = c.Now()
		wantNotFound(t, s.Commit(ctx, r), "commit of a session of a past epoch")
		mustNotFind(t, s, r.Key)
	}
	// A login that read the epoch before the bump must not create a
	// session that can be found.
	late, lateAnon := NewRecord(user, c.Now()), NewRecord("", c.Now())
	wantNotFound(t, s.Commit(ctx, late), "create at a past epoch")
	wantNotFound(t, s.Commit(ctx, lateAnon), "anonymous create at a past epoch")
	_, err := s.Rotate(ctx, cloakroom.Rotation{New: NewRecord(user, c.Now())})
	wantNotFound(t, err, "login (Rotate) at a past epoch")
	mustNotFind(t, s, late.Key)
	mustNotFind(t, s, lateAnon.Key)
	mustList(t, s, user, "after creates at a past epoch")
}

func testEpochBumpBlocksRotation(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	for i, user := range []string{uniqueUser("alice"), ""} {
		old := NewRecord(user, c.Now())
		old.Epoch = uint64(i) // the epoch the previous round bumped to
		mustCommit(t, s, old)
		mustFind(t, s, old.Key)
		epoch, err := s.BumpEpoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		next := successor(old, c.Now())
		_, err = s.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
		wantNotFound(t, err, "renewing a session of a past epoch")
		// Claiming the new epoch does not help: the old session is dead.
		claimed := successor(old, c.Now())
		claimed.Epoch = epoch
		_, err = s.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: claimed})
		wantNotFound(t, err, "renewing a session of a past epoch into the new one")
		if user != "" {
			_, err = s.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: claimed, Bump: true})
			wantNotFound(t, err, "revoking others from a session of a past epoch")
		}
		mustNotFind(t, s, next.Key)
		mustNotFind(t, s, claimed.Key)
	}
}

func testEpochRotationKeepsEpoch(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	bumpEpoch(t, s, 1)
	old := NewRecord(uniqueUser("alice"), c.Now())
	old.Epoch = 1
	mustCommit(t, s, old)
	next := successor(old, c.Now())
	got, err := s.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next, Bump: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != 1 {
		t.Fatalf("rotated session's Epoch = %d, want 1", got.Epoch)
	}
	if rec := mustFind(t, s, next.Key); rec.Epoch != 1 {
		t.Fatalf("stored Epoch = %d, want 1", rec.Epoch)
	}
}

// testEpochBumpLeavesGenerations: the epoch and the users' generations are
// independent counters.
func testEpochBumpLeavesGenerations(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	user := uniqueUser("alice")
	if _, err := s.BumpGeneration(ctx, user); err != nil {
		t.Fatal(err)
	}
	bumpEpoch(t, s, 1)
	if g, err := s.Generation(ctx, user); err != nil || g != 1 {
		t.Fatalf("Generation after an epoch bump = %d, %v; want 1", g, err)
	}
	if g, err := s.BumpGeneration(ctx, user); err != nil || g != 2 {
		t.Fatalf("BumpGeneration after an epoch bump = %d, %v; want 2", g, err)
	}
	if e, err := s.Epoch(ctx); err != nil || e != 1 {
		t.Fatalf("Epoch after a generation bump = %d, %v; want 1", e, err)
	}
}

// testEpochBumpRacesLogins: logins and renewals racing a global
// revocation. Whatever the order, once the bump has returned no session
// made from the state before it is found.
func testEpochBumpRacesLogins(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	for round := 0; round < 10; round++ {
		epoch, err := s.Epoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		user := uniqueUser("alice")
		old := NewRecord(user, c.Now())
		old.Epoch = epoch
		mustCommit(t, s, old)
		next := successor(old, c.Now())
		login := NewRecord(user, c.Now()) // read the epoch before the bump
		login.Epoch = epoch
		anon := NewRecord("", c.Now())
		anon.Epoch = epoch
		var wg sync.WaitGroup
		wg.Add(4)
		go func() {
			defer wg.Done()
			if _, err := s.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next}); err != nil && !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("Rotate: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.Rotate(ctx, cloakroom.Rotation{New: login}); err != nil && !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("login: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.Commit(ctx, anon); err != nil && !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("anonymous create: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.BumpEpoch(ctx); err != nil {
				t.Errorf("BumpEpoch: %v", err)
			}
		}()
		wg.Wait()
		for _, k := range []cloakroom.Key{old.Key, next.Key, login.Key, anon.Key} {
			mustNotFind(t, s, k)
		}
		mustList(t, s, user, fmt.Sprintf("round %d, after the global revocation", round))
	}
}

func testEpochBumpNotifies(t *testing.T, s cloakroom.Store, c *Clock) {
	ends := watchEnds(t, s)
	select {
	case e := <-ends:
		if !e.All {
			t.Fatalf("first notification = %+v, want End{All: true}", e)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no notification after subscribing")
	}
	if _, err := s.BumpEpoch(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case e := <-ends:
			if e.Epoch == 1 {
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no notification of BumpEpoch")
		}
	}
}
