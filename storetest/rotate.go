package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// rotateTests are the cases of [cloakroom.Rotator.Rotate] and of the
// store's end notifications. The race cases drive the store the way parked
// requests do: a rotation must never bring back a session that a logout,
// a revocation or an account change ended.
var rotateTests = []struct {
	name string
	fn   func(t *testing.T, s cloakroom.Store, c *Clock)
}{
	{"RotateReplaces", testRotateReplaces},
	{"RotateAfterDeleteCreatesNothing", testRotateAfterDelete},
	{"RotateAfterExpiryCreatesNothing", testRotateAfterExpiry},
	{"RotateAfterBumpCreatesNothing", testRotateAfterBump},
	{"RotatePinnedGenerationMoved", testRotatePinnedGenerationMoved},
	{"RotateLoginDeletesPrevious", testRotateLoginDeletesPrevious},
	{"RotateBumpRevokesOthers", testRotateBump},
	{"RotateBumpNeedsUser", testRotateBumpNeedsUser},
	{"RotateRefusesMalformed", testRotateRefusesMalformed},
	{"RotateMustLiveWithoutOld", testRotateMustLiveWithoutOld},
	{"RotateKeyConflict", testRotateKeyConflict},
	{"RotateStaleVersionConflicts", testRotateStaleVersion},
	{"RotateRacesCommit", testRotateRacesCommit},
	{"RotateRaceOneWinner", testRotateRaceOneWinner},
	{"RotateRacesBump", testRotateRacesBump},
	{"RotateRacesDelete", testRotateRacesDelete},
	{"EndNotifications", testEndNotifications},
	{"EndNotificationsStartWithAll", testEndNotificationsStartWithAll},
}

func rotator(t *testing.T, s cloakroom.Store) cloakroom.Rotator {
	t.Helper()
	return s
}

// successor returns a fresh version-1 record that continues old: same user,
// generation and epoch, new key.
func successor(old cloakroom.Record, now time.Time) cloakroom.Record {
	rec := NewRecord(old.UserID, now)
	rec.Generation = old.Generation
	rec.Epoch = old.Epoch
	rec.Data = old.Data
	return rec
}

func wantNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func wantConflict(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, cloakroom.ErrConflict) {
		t.Fatalf("%s: err = %v, want ErrConflict", what, err)
	}
}

func testRotateReplaces(t *testing.T, s cloakroom.Store, c *Clock) {
	old := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, old)
	mustFind(t, s, old.Key) // warm any cache
	next := successor(old, c.Now())
	got, err := rotator(t, s).Rotate(context.Background(), cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	sameRecord(t, got, next)
	sameRecord(t, mustFind(t, s, next.Key), next)
	mustNotFind(t, s, old.Key)
}

func testRotateAfterDelete(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	old := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, old)
	mustFind(t, s, old.Key)
	mustDelete(t, s, old.Key)
	next := successor(old, c.Now())
	_, err := rotator(t, s).Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
	wantNotFound(t, err, "rotating a logged-out session")
	mustNotFind(t, s, next.Key)
	mustList(t, s, old.UserID, "after a rotation of a logged-out session")
}

func testRotateAfterExpiry(t *testing.T, s cloakroom.Store, c *Clock) {
	old := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, old)
	c.Advance(old.IdleTimeout + time.Second)
	next := successor(old, c.Now())
	_, err := rotator(t, s).Rotate(context.Background(), cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
	wantNotFound(t, err, "rotating an expired session")
	mustNotFind(t, s, next.Key)
}

func testRotateAfterBump(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	old := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, old)
	mustFind(t, s, old.Key)
	gen, err := s.BumpGeneration(ctx, old.UserID)
	if err != nil {
		t.Fatal(err)
	}
	r := rotator(t, s)
	next := successor(old, c.Now())
	_, err = r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
	wantNotFound(t, err, "rotating a session revoked by a bump")
	// Claiming the new generation does not help: the old session is dead.
	fresh := successor(old, c.Now())
	fresh.Generation = gen
	_, err = r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: fresh})
	wantNotFound(t, err, "rotating a revoked session into the new generation")
	// Nor does asking for a bump of one's own.
	_, err = r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: successor(old, c.Now()), Bump: true})
	wantNotFound(t, err, "revoking others from a revoked session")
	if g, _ := s.Generation(ctx, old.UserID); g != gen {
		t.Fatalf("generation = %d after refused rotations, want %d unchanged", g, gen)
	}
	mustNotFind(t, s, next.Key)
	mustNotFind(t, s, fresh.Key)
}

func testRotatePinnedGenerationMoved(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	user := uniqueUser("alice")
	pinned, err := s.Generation(ctx, user) // read before the password check
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.BumpGeneration(ctx, user); err != nil { // the account changed meanwhile
		t.Fatal(err)
	}
	rec := NewRecord(user, c.Now())
	rec.Generation = pinned
	_, err = rotator(t, s).Rotate(ctx, cloakroom.Rotation{New: rec})
	wantNotFound(t, err, "login with a generation pinned before an account change")
	mustNotFind(t, s, rec.Key)
}

func testRotateLoginDeletesPrevious(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	anon := NewRecord("", c.Now())
	mustCommit(t, s, anon)
	r := rotator(t, s)
	rec := NewRecord(uniqueUser("alice"), c.Now())
	if _, err := r.Rotate(ctx, cloakroom.Rotation{Old: anon.Key, New: rec}); err != nil {
		t.Fatalf("login over an anonymous session: %v", err)
	}
	mustNotFind(t, s, anon.Key)
	mustFind(t, s, rec.Key)
	// A login over a session that is already gone still succeeds.
	again := NewRecord(rec.UserID, c.Now())
	if _, err := r.Rotate(ctx, cloakroom.Rotation{Old: anon.Key, New: again}); err != nil {
		t.Fatalf("login over a missing session: %v", err)
	}
	mustFind(t, s, again.Key)
}

func testRotateBump(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	user := uniqueUser("alice")
	other, current := NewRecord(user, c.Now()), NewRecord(user, c.Now())
	mustCommit(t, s, other)
	mustCommit(t, s, current)
	mustFind(t, s, other.Key)
	r := rotator(t, s)
	next := successor(current, c.Now())
	got, err := r.Rotate(ctx, cloakroom.Rotation{Old: current.Key, OldMustLive: true, New: next, Bump: true})
	if err != nil {
		t.Fatalf("Rotate with bump: %v", err)
	}
	if got.Generation != 1 {
		t.Fatalf("rotated session generation = %d, want 1", got.Generation)
	}
	if g, _ := s.Generation(ctx, user); g != 1 {
		t.Fatalf("user generation = %d, want 1", g)
	}
	mustNotFind(t, s, other.Key)
	mustNotFind(t, s, current.Key)
	if found := mustFind(t, s, next.Key); found.Generation != 1 {
		t.Fatalf("stored generation = %d, want 1", found.Generation)
	}
	// The old token, parked in a second request, cannot revoke again.
	_, err = r.Rotate(ctx, cloakroom.Rotation{Old: current.Key, OldMustLive: true, New: successor(current, c.Now()), Bump: true})
	wantNotFound(t, err, "second revoke-others from the replaced session")
	mustFind(t, s, next.Key)
}

// testRotateBumpNeedsUser: a bump revokes a user's other sessions, so a
// bump for a new session of no user is a caller's mistake. Every store
// refuses it the same way, writing nothing, rather than report a
// revocation that did not happen.
func testRotateBumpNeedsUser(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	anon, mine := NewRecord("", c.Now()), NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, anon)
	mustCommit(t, s, mine)
	mustFind(t, s, anon.Key)
	mustFind(t, s, mine.Key)
	var none cloakroom.Key
	for _, old := range []cloakroom.Record{anon, mine, {Key: none}} {
		for _, mustLive := range []bool{false, true} {
			if old.Key == none && mustLive {
				continue
			}
			next := NewRecord("", c.Now())
			_, err := r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: mustLive, New: next, Bump: true})
			if !errors.Is(err, cloakroom.ErrInvalidInput) || errors.Is(err, cloakroom.ErrNotFound) || errors.Is(err, cloakroom.ErrConflict) {
				t.Fatalf("Rotate with Bump to an anonymous session (old user %q, OldMustLive %v): err = %v, want ErrInvalidInput", old.UserID, mustLive, err)
			}
			mustNotFind(t, s, next.Key)
		}
	}
	mustFind(t, s, anon.Key)
	mustFind(t, s, mine.Key)
	if g, err := s.Generation(ctx, mine.UserID); err != nil || g != 0 {
		t.Fatalf("generation of the old session's user = %d, %v; want 0", g, err)
	}
}

// testRotateRefusesMalformed: a rotation that no store can carry out as
// [cloakroom.Rotation] describes it (a new session not at version 1, under
// the zero key or the old key, or at a generation or epoch that could never
// be bumped past) is refused by every store with ErrInvalidInput, writing
// nothing, whether or not the old session lives.
func testRotateRefusesMalformed(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	old := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, old)
	mustFind(t, s, old.Key)
	cases := []struct {
		name   string
		change func(*cloakroom.Record)
	}{
		{"version 0", func(rec *cloakroom.Record) { rec.Version = 0 }},
		{"version 2", func(rec *cloakroom.Record) { rec.Version = 2 }},
		{"zero key", func(rec *cloakroom.Record) { rec.Key = cloakroom.Key{} }},
		{"old key", func(rec *cloakroom.Record) { rec.Key = old.Key }},
		{"generation 2^63-1", func(rec *cloakroom.Record) { rec.Generation = math.MaxInt64 }},
		{"generation 2^64-1", func(rec *cloakroom.Record) { rec.Generation = math.MaxUint64 }},
		{"epoch 2^63-1", func(rec *cloakroom.Record) { rec.Epoch = math.MaxInt64 }},
	}
	for _, tc := range cases {
		for _, mustLive := range []bool{false, true} {
			next := successor(old, c.Now())
			tc.change(&next)
			_, err := r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: mustLive, New: next})
			if !errors.Is(err, cloakroom.ErrInvalidInput) {
				t.Fatalf("Rotate to a new session with %s (OldMustLive %v): err = %v, want ErrInvalidInput", tc.name, mustLive, err)
			}
			if next.Key != old.Key {
				mustNotFind(t, s, next.Key)
			}
			sameRecord(t, mustFind(t, s, old.Key), old)
		}
	}
	if g, err := s.Generation(ctx, old.UserID); err != nil || g != 0 {
		t.Fatalf("generation after refused rotations = %d, %v; want 0", g, err)
	}
}

// testRotateMustLiveWithoutOld: OldMustLive with no old session names a
// session that cannot live, so every store refuses it with ErrNotFound and
// creates nothing, for an anonymous new session as for a user's.
func testRotateMustLiveWithoutOld(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	for _, user := range []string{"", uniqueUser("alice")} {
		next := NewRecord(user, c.Now())
		_, err := r.Rotate(ctx, cloakroom.Rotation{OldMustLive: true, New: next})
		wantNotFound(t, err, fmt.Sprintf("Rotate with OldMustLive and no old session, new user %q", user))
		mustNotFind(t, s, next.Key)
	}
}

func testRotateKeyConflict(t *testing.T, s cloakroom.Store, c *Clock) {
	user := uniqueUser("alice")
	old, taken := NewRecord(user, c.Now()), NewRecord(user, c.Now())
	mustCommit(t, s, old)
	mustCommit(t, s, taken)
	next := successor(old, c.Now())
	next.Key = taken.Key
	_, err := rotator(t, s).Rotate(context.Background(), cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
	wantConflict(t, err, "rotate onto an existing key")
	sameRecord(t, mustFind(t, s, old.Key), old)
	sameRecord(t, mustFind(t, s, taken.Key), taken)
}

// testRotateStaleVersion: a rotation that carries over values read at
// version 1 is refused, writing nothing, once a commit moved the session
// to version 2 (a privilege removed, say); at version 2 it goes through.
// Anonymous sessions and revocations of the others included.
func testRotateStaleVersion(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	for _, tc := range []struct {
		name       string
		user, bump bool
	}{{"anonymous", false, false}, {"user", true, false}, {"user with bump", true, true}} {
		user := ""
		if tc.user {
			user = uniqueUser("alice")
		}
		var other cloakroom.Record
		if tc.user {
			other = NewRecord(user, c.Now())
			mustCommit(t, s, other)
		}
		old := NewRecord(user, c.Now())
		old.Data = []byte("elevated")
		mustCommit(t, s, old)
		mustFind(t, s, old.Key) // warm any cache
		changed := old
		changed.Version, changed.Data = 2, []byte("removed")
		mustCommit(t, s, changed)

		stale := successor(old, c.Now())
		_, err := r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, OldVersion: old.Version, New: stale, Bump: tc.bump})
		if !errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
			t.Fatalf("%s: rotating from version 1 of a session at version 2: err = %v, want ErrConflict", tc.name, err)
		}
		mustNotFind(t, s, stale.Key)
		sameRecord(t, mustFind(t, s, old.Key), changed)
		if tc.user {
			mustFind(t, s, other.Key)
			if g, err := s.Generation(ctx, user); err != nil || g != 0 {
				t.Fatalf("%s: generation = %d, %v after a refused rotation; want 0", tc.name, g, err)
			}
		}

		next := successor(changed, c.Now())
		got, err := r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, OldVersion: changed.Version, New: next, Bump: tc.bump})
		if err != nil {
			t.Fatalf("%s: rotating from the current version: %v", tc.name, err)
		}
		mustNotFind(t, s, old.Key)
		if found := mustFind(t, s, next.Key); string(found.Data) != "removed" || found.Generation != got.Generation {
			t.Fatalf("%s: rotated session has data %q, generation %d; want %q, %d", tc.name, found.Data, found.Generation, "removed", got.Generation)
		}
	}
}

// testRotateRacesCommit: a renewal races a value change of its session,
// reloading and rotating again on ErrConflict as the manager does. The
// rotation always ends up done, and a commit that succeeded is in the
// successor: a removed privilege never comes back with the new token.
func testRotateRacesCommit(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	for round := 0; round < 20; round++ {
		user := ""
		if round%3 != 0 {
			user = uniqueUser("alice")
		}
		bump := round%3 == 2
		old := NewRecord(user, c.Now())
		old.Data = []byte("elevated")
		mustCommit(t, s, old)
		mustFind(t, s, old.Key)
		start := make(chan struct{})
		var commitErr, rotErr error
		var rotated cloakroom.Record
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			changed := old
			changed.Version, changed.Data = 2, []byte("removed")
			commitErr = s.Commit(ctx, changed)
		}()
		go func() {
			defer wg.Done()
			<-start
			cur := old
			for attempt := 0; attempt < 8; attempt++ {
				rotated, rotErr = r.Rotate(ctx, cloakroom.Rotation{Old: cur.Key, OldMustLive: true, OldVersion: cur.Version, New: successor(cur, c.Now()), Bump: bump})
				if !errors.Is(rotErr, cloakroom.ErrConflict) {
					return
				}
				fresh, found, err := s.Find(ctx, cur.Key)
				if err != nil || !found {
					rotErr = fmt.Errorf("reload after a conflict: found %v, %v", found, err)
					return
				}
				cur = fresh
			}
		}()
		close(start)
		wg.Wait()
		if rotErr != nil {
			t.Fatalf("round %d: rotation: %v", round, rotErr)
		}
		mustNotFind(t, s, old.Key)
		got := mustFind(t, s, rotated.Key)
		switch {
		case commitErr == nil && string(got.Data) != "removed":
			t.Fatalf("round %d: the commit succeeded, but the successor has %q: the rotation undid it", round, got.Data)
		case commitErr != nil && !errors.Is(commitErr, cloakroom.ErrNotFound):
			t.Fatalf("round %d: commit: %v", round, commitErr)
		case commitErr != nil && string(got.Data) != "elevated":
			t.Fatalf("round %d: the commit failed, but the successor has %q", round, got.Data)
		}
	}
}

// testRotateRaceOneWinner: parked requests of one session rotate at once.
// Exactly one may win; the others find their session gone.
func testRotateRaceOneWinner(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	for round := 0; round < 5; round++ {
		old := NewRecord(uniqueUser("alice"), c.Now())
		mustCommit(t, s, old)
		const racers = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, bump := 0, round%2 == 1
		for i := 0; i < racers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: successor(old, c.Now()), Bump: bump})
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, cloakroom.ErrNotFound):
					t.Errorf("Rotate: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d of %d rotations of one session succeeded, want exactly 1", round, wins, racers)
		}
		if list, err := s.List(ctx, old.UserID); err != nil || len(list) != 1 {
			t.Fatalf("round %d: List = %d sessions, %v; want 1", round, len(list), err)
		}
	}
}

// testRotateRacesBump: a rotation races an account change. Whatever the
// order, once both are done the rotated session must be dead: a rotation
// that ran first was revoked by the bump, one that ran second was refused.
func testRotateRacesBump(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	for round := 0; round < 20; round++ {
		user := uniqueUser("alice")
		old := NewRecord(user, c.Now())
		mustCommit(t, s, old)
		pinned := NewRecord(user, c.Now()) // a login that pinned generation 0
		var wg sync.WaitGroup
		next := successor(old, c.Now())
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, err := r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next, Bump: round%2 == 1}); err != nil && !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("Rotate: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := r.Rotate(ctx, cloakroom.Rotation{New: pinned}); err != nil && !errors.Is(err, cloakroom.ErrNotFound) {
				t.Errorf("pinned login: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := s.BumpGeneration(ctx, user); err != nil {
				t.Errorf("BumpGeneration: %v", err)
			}
		}()
		wg.Wait()
		// A rotation that bumped first raised the generation to 1; the
		// admin's bump then took it to 2. Either way every session made
		// from the state before the admin's bump is dead.
		mustNotFind(t, s, old.Key)
		mustNotFind(t, s, next.Key)
		mustNotFind(t, s, pinned.Key)
		mustList(t, s, user, fmt.Sprintf("round %d, after the account change", round))
	}
}

// testRotateRacesDelete: a rotation races the logout of its session. If
// the rotation won, the logout found nothing to delete and the successor
// lives (the logout came second); if the logout won, nothing was created.
// Never both a refused rotation and a live successor, nor two live
// sessions.
func testRotateRacesDelete(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	r := rotator(t, s)
	for round := 0; round < 20; round++ {
		old := NewRecord(uniqueUser("alice"), c.Now())
		mustCommit(t, s, old)
		next := successor(old, c.Now())
		var rotErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, rotErr = r.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
		}()
		go func() {
			defer wg.Done()
			if err := s.Delete(ctx, old.Key); err != nil {
				t.Errorf("Delete: %v", err)
			}
		}()
		wg.Wait()
		mustNotFind(t, s, old.Key)
		_, found, err := s.Find(ctx, next.Key)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case rotErr == nil && !found:
			t.Fatalf("round %d: rotation succeeded but its session is gone", round)
		case rotErr != nil && !errors.Is(rotErr, cloakroom.ErrNotFound):
			t.Fatalf("round %d: Rotate: %v", round, rotErr)
		case rotErr != nil && found:
			t.Fatalf("round %d: refused rotation left a live session", round)
		}
	}
}

// watchEnds subscribes to s's end notifications until the test ends and
// returns the channel they arrive on; it skips a store that notifies none.
// Notifications beyond the channel's buffer are dropped: fn must not block.
func watchEnds(t *testing.T, s cloakroom.Store) <-chan cloakroom.End {
	t.Helper()
	n, ok := s.(cloakroom.EndNotifier)
	if !ok {
		t.Skipf("%T does not notify session ends", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ends := make(chan cloakroom.End, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.WatchEnds(ctx, func(e cloakroom.End) {
			select {
			case ends <- e:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ends
}

// testEndNotifications: a store that notifies ends reports deletes, bumps
// and rotations to its subscribers.
func testEndNotifications(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	ends := watchEnds(t, s)

	// Subscribing may take effect asynchronously: delete probes until one
	// is reported.
	await := func(what string, match func(cloakroom.End) bool, poke func()) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		if poke != nil {
			poke()
		}
		for {
			select {
			case e := <-ends:
				if match(e) {
					return
				}
			case <-tick.C:
				if poke != nil {
					poke()
				}
			case <-deadline:
				t.Fatalf("no notification of %s", what)
			}
		}
	}
	probeUser := uniqueUser("probe")
	var probe cloakroom.Record
	await("a probe delete", func(e cloakroom.End) bool { return e.Key == probe.Key }, func() {
		probe = NewRecord(probeUser, c.Now())
		mustCommit(t, s, probe)
		mustDelete(t, s, probe.Key)
	})

	user := uniqueUser("alice")
	rec := NewRecord(user, c.Now())
	mustCommit(t, s, rec)
	mustDelete(t, s, rec.Key)
	await("Delete", func(e cloakroom.End) bool { return e.Key == rec.Key }, nil)

	if _, err := s.BumpGeneration(ctx, user); err != nil {
		t.Fatal(err)
	}
	await("BumpGeneration", func(e cloakroom.End) bool { return e.UserID == user && e.Generation == 1 }, nil)

	old := NewRecord(user, c.Now())
	old.Generation = 1
	mustCommit(t, s, old)
	next := successor(old, c.Now())
	if _, err := rotator(t, s).Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next}); err != nil {
		t.Fatal(err)
	}
	await("Rotate's delete of the old session", func(e cloakroom.End) bool { return e.Key == old.Key }, nil)

	if _, err := rotator(t, s).Rotate(ctx, cloakroom.Rotation{Old: next.Key, OldMustLive: true, New: successor(next, c.Now()), Bump: true}); err != nil {
		t.Fatal(err)
	}
	await("Rotate's bump", func(e cloakroom.End) bool { return e.UserID == user && e.Generation == 2 }, nil)
}

// testEndNotificationsStartWithAll: WatchEnds reports End{All: true} once
// its subscription is live, so with no end made meanwhile that is the
// first notification. A subscriber cannot tell when that is otherwise: an
// end made after it subscribed but before then is never reported, and the
// All has it re-check whatever it watches. An end made once the All has
// come is reported.
func testEndNotificationsStartWithAll(t *testing.T, s cloakroom.Store, c *Clock) {
	ends := watchEnds(t, s)
	// The bound only turns a missing notification into a failure rather
	// than a hang; nothing here waits for time to pass.
	next := func(what string) cloakroom.End {
		t.Helper()
		select {
		case e := <-ends:
			return e
		case <-time.After(20 * time.Second):
			t.Fatalf("no notification %s", what)
			return cloakroom.End{}
		}
	}
	if e := next("after subscribing"); !e.All {
		t.Fatalf("first notification after subscribing is %+v, want End{All: true}", e)
	}
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	mustDelete(t, s, rec.Key)
	for {
		e := next("of a Delete made once the subscription was live")
		if e.Key == rec.Key {
			return
		}
		if !e.All {
			t.Fatalf("notification %+v, want the Delete's (or All)", e)
		}
	}
}
