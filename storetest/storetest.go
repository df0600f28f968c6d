// Package storetest is the conformance suite every cloakroom [cloakroom.Store]
// runs. A store's own test calls [Run] with a factory; the suite drives the
// store through a [Clock] it controls, so expiry is tested without sleeping.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
//			return memstore.New(memstore.Config{Now: clock.Now})
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// Clock is a settable clock shared between the suite and the store under
// test. Its zero value is not usable; NewClock starts it at a fixed instant.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's current time. Pass it to the store as its clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Factory returns a new, empty store that reads time from clock. The store
// must be isolated from other stores the factory returned (a fresh key
// prefix, schema or database), and the factory registers any cleanup with
// t.Cleanup.
type Factory func(t *testing.T, clock *Clock) cloakroom.Store

// Start is the instant every test's clock starts at. It is recent and has
// no sub-second part, so stores that keep only milliseconds still compare
// equal.
var Start = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

// Run runs the whole conformance suite against the stores newStore makes.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s cloakroom.Store, c *Clock)
	}{
		{"FindUnknown", testFindUnknown},
		{"CreateAndFind", testCreateAndFind},
		{"CreateTwiceConflicts", testCreateTwice},
		{"UpdateVersioned", testUpdateVersioned},
		{"StaleVersionConflicts", testStaleVersion},
		{"CommitAfterDeleteIsNotFound", testCommitAfterDelete},
		{"Delete", testDelete},
		{"DeleteUnknown", testDeleteUnknown},
		{"IdleExpiry", testIdleExpiry},
		{"AbsoluteExpiry", testAbsoluteExpiry},
		{"TouchExtendsIdle", testTouchExtendsIdle},
		{"CommitAfterExpiryIsNotFound", testCommitAfterExpiry},
		{"ListUser", testList},
		{"ListSkipsExpired", testListSkipsExpired},
		{"GenerationBump", testGenerationBump},
		{"GenerationBumpBlocksStaleCommit", testGenerationStaleCommit},
		{"GenerationIsPerUser", testGenerationPerUser},
		{"AnonymousSession", testAnonymous},
		{"LargeValue", testLargeValue},
		{"ConcurrentCommits", testConcurrentCommits},
		{"ConcurrentCreates", testConcurrentCreates},
		{"CanceledContext", testCanceledContext},
		{"VersionZeroRefused", testVersionZero},
	}
	tests = append(tests, rotateTests...)
	tests = append(tests, epochTests...)
	tests = append(tests, auxTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewClock(Start)
			s := newStore(t, clock)
			tt.fn(t, s, clock)
		})
	}
}

// NewRecord returns a fresh version-1 record for userID, valid at now with a
// 30-minute idle timeout and a 12-hour absolute lifetime.
func NewRecord(userID string, now time.Time) cloakroom.Record {
	var raw [32]byte
	rand.Read(raw[:])
	var h [16]byte
	rand.Read(h[:])
	return cloakroom.Record{
		Key:              sha256.Sum256(raw[:]),
		Handle:           fmt.Sprintf("%x", h),
		UserID:           userID,
		Version:          1,
		CreatedAt:        now,
		LastSeen:         now,
		IdleTimeout:      30 * time.Minute,
		AbsoluteDeadline: now.Add(12 * time.Hour),
		IP:               "192.0.2.1",
		UserAgent:        "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
		Data:             []byte("data"),
	}
}

func uniqueUser(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%x", prefix, b)
}

func mustCommit(t *testing.T, s cloakroom.Store, rec cloakroom.Record) {
	t.Helper()
	if err := s.Commit(context.Background(), rec); err != nil {
		t.Fatalf("Commit(version %d): %v", rec.Version, err)
	}
}

func mustFind(t *testing.T, s cloakroom.Store, key cloakroom.Key) cloakroom.Record {
	t.Helper()
	rec, found, err := s.Find(context.Background(), key)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if !found {
		t.Fatalf("Find(%s): not found, want found", key.Short())
	}
	return rec
}

func mustDelete(t *testing.T, s cloakroom.Store, key cloakroom.Key) {
	t.Helper()
	if err := s.Delete(context.Background(), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func mustNotFind(t *testing.T, s cloakroom.Store, key cloakroom.Key) {
	t.Helper()
	_, found, err := s.Find(context.Background(), key)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	if found {
		t.Fatalf("Find(%s): found, want not found", key.Short())
	}
}

// sameRecord compares records field by field; times compare with Equal at
// millisecond precision, which every store keeps.
// mustList fails t unless List(user) returns the sessions of exactly the
// keys in want, in any order; what says when, for the message.
func mustList(t *testing.T, s cloakroom.Store, user, what string, want ...cloakroom.Key) {
	t.Helper()
	list, err := s.List(context.Background(), user)
	if err != nil {
		t.Fatalf("%s: List(%q): %v", what, user, err)
	}
	listed := make(map[cloakroom.Key]bool, len(list))
	for _, rec := range list {
		listed[rec.Key] = true
	}
	for _, key := range want {
		if !listed[key] {
			t.Fatalf("%s: List(%q) = %d sessions, misses one of the %d wanted", what, user, len(list), len(want))
		}
	}
	if len(list) != len(want) {
		t.Fatalf("%s: List(%q) = %d sessions, want %d", what, user, len(list), len(want))
	}
}

func sameRecord(t *testing.T, got, want cloakroom.Record) {
	t.Helper()
	eqTime := func(a, b time.Time) bool { return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond)) }
	switch {
	case got.Key != want.Key:
		t.Errorf("Key = %s, want %s", got.Key.Short(), want.Key.Short())
	case got.Handle != want.Handle:
		t.Errorf("Handle = %q, want %q", got.Handle, want.Handle)
	case got.UserID != want.UserID:
		t.Errorf("UserID = %q, want %q", got.UserID, want.UserID)
	case got.Generation != want.Generation:
		t.Errorf("Generation = %d, want %d", got.Generation, want.Generation)
	case got.Epoch != want.Epoch:
		t.Errorf("Epoch = %d, want %d", got.Epoch, want.Epoch)
	case got.Version != want.Version:
		t.Errorf("Version = %d, want %d", got.Version, want.Version)
	case !eqTime(got.CreatedAt, want.CreatedAt):
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want.CreatedAt)
	case !eqTime(got.LastSeen, want.LastSeen):
		t.Errorf("LastSeen = %v, want %v", got.LastSeen, want.LastSeen)
	case got.IdleTimeout != want.IdleTimeout:
		t.Errorf("IdleTimeout = %v, want %v", got.IdleTimeout, want.IdleTimeout)
	case !eqTime(got.AbsoluteDeadline, want.AbsoluteDeadline):
		t.Errorf("AbsoluteDeadline = %v, want %v", got.AbsoluteDeadline, want.AbsoluteDeadline)
	case got.Persistent != want.Persistent:
		t.Errorf("Persistent = %v, want %v", got.Persistent, want.Persistent)
	case got.IP != want.IP || got.UserAgent != want.UserAgent:
		t.Errorf("IP, UserAgent = %q, %q, want %q, %q", got.IP, got.UserAgent, want.IP, want.UserAgent)
	case !bytes.Equal(got.Data, want.Data):
		t.Errorf("Data = %q, want %q", got.Data, want.Data)
	}
}

func testFindUnknown(t *testing.T, s cloakroom.Store, c *Clock) {
	mustNotFind(t, s, cloakroom.Key{1, 2, 3})
}

func testCreateAndFind(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	rec.Persistent = true
	mustCommit(t, s, rec)
	sameRecord(t, mustFind(t, s, rec.Key), rec)
}

func testCreateTwice(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	other := rec
	other.Data = []byte("other")
	wantConflict(t, s.Commit(context.Background(), other), "second create")
	sameRecord(t, mustFind(t, s, rec.Key), rec)
}

func testUpdateVersioned(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	rec.Version = 2
	rec.Data = []byte("second")
	mustCommit(t, s, rec)
	rec.Version = 3
	rec.Data = nil
	mustCommit(t, s, rec)
	sameRecord(t, mustFind(t, s, rec.Key), rec)
}

func testStaleVersion(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	a, b := rec, rec
	a.Version, a.Data = 2, []byte("a")
	b.Version, b.Data = 2, []byte("b")
	mustCommit(t, s, a)
	wantConflict(t, s.Commit(context.Background(), b), "stale commit")
	skip := rec
	skip.Version = 5
	wantConflict(t, s.Commit(context.Background(), skip), "version jump")
	sameRecord(t, mustFind(t, s, rec.Key), a)
}

func testCommitAfterDelete(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	mustDelete(t, s, rec.Key)
	rec.Version = 2
	if err := s.Commit(context.Background(), rec); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("commit after delete: err = %v, want ErrNotFound", err)
	}
	mustNotFind(t, s, rec.Key)
}

func testDelete(t *testing.T, s cloakroom.Store, c *Clock) {
	user := uniqueUser("alice")
	a, b := NewRecord(user, c.Now()), NewRecord(user, c.Now())
	mustCommit(t, s, a)
	mustCommit(t, s, b)
	mustDelete(t, s, a.Key)
	mustNotFind(t, s, a.Key)
	mustFind(t, s, b.Key)
	mustList(t, s, user, "after a delete", b.Key)
}

func testDeleteUnknown(t *testing.T, s cloakroom.Store, c *Clock) {
	if err := s.Delete(context.Background(), cloakroom.Key{9}); err != nil {
		t.Fatalf("Delete(unknown) = %v, want nil", err)
	}
}

func testIdleExpiry(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	c.Advance(rec.IdleTimeout - time.Second)
	mustFind(t, s, rec.Key)
	c.Advance(time.Second)
	mustNotFind(t, s, rec.Key)
}

func testAbsoluteExpiry(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	rec.IdleTimeout = 24 * time.Hour
	rec.AbsoluteDeadline = c.Now().Add(time.Hour)
	mustCommit(t, s, rec)
	c.Advance(time.Hour - time.Second)
	mustFind(t, s, rec.Key)
	c.Advance(time.Second)
	mustNotFind(t, s, rec.Key)
}

func testTouchExtendsIdle(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	for i := 0; i < 4; i++ {
		c.Advance(20 * time.Minute)
		rec = mustFind(t, s, rec.Key)
		rec.Version++
		rec.LastSeen = c.Now()
		mustCommit(t, s, rec)
	}
	c.Advance(29 * time.Minute)
	mustFind(t, s, rec.Key)
}

func testCommitAfterExpiry(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	c.Advance(rec.IdleTimeout)
	rec.Version = 2
	rec.LastSeen = c.Now()
	if err := s.Commit(context.Background(), rec); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("commit onto expired session: err = %v, want ErrNotFound", err)
	}
	mustNotFind(t, s, rec.Key)
}

func testList(t *testing.T, s cloakroom.Store, c *Clock) {
	user, other := uniqueUser("alice"), uniqueUser("bob")
	var want []cloakroom.Record
	for i := 0; i < 3; i++ {
		rec := NewRecord(user, c.Now())
		rec.UserAgent = fmt.Sprintf("agent %d", i)
		mustCommit(t, s, rec)
		want = append(want, rec)
		c.Advance(time.Second)
	}
	mustCommit(t, s, NewRecord(other, c.Now()))
	got, err := s.List(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("List returned %d sessions, want %d", len(got), len(want))
	}
	// Any order: the manager sorts.
	byKey := make(map[cloakroom.Key]cloakroom.Record, len(got))
	for _, rec := range got {
		byKey[rec.Key] = rec
	}
	for i := range want {
		found, ok := byKey[want[i].Key]
		if !ok {
			t.Fatalf("List misses session %d", i)
		}
		sameRecord(t, found, want[i])
	}
	mustList(t, s, uniqueUser("nobody"), "an unknown user")
}

func testListSkipsExpired(t *testing.T, s cloakroom.Store, c *Clock) {
	user := uniqueUser("alice")
	short := NewRecord(user, c.Now())
	short.IdleTimeout = time.Minute
	long := NewRecord(user, c.Now())
	mustCommit(t, s, short)
	mustCommit(t, s, long)
	c.Advance(2 * time.Minute)
	mustList(t, s, user, "after one session expired", long.Key)
}

func testGenerationBump(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	user := uniqueUser("alice")
	gen, err := s.Generation(ctx, user)
	if err != nil || gen != 0 {
		t.Fatalf("Generation(new user) = %d, %v; want 0, nil", gen, err)
	}
	a, b := NewRecord(user, c.Now()), NewRecord(user, c.Now())
	mustCommit(t, s, a)
	mustCommit(t, s, b)
	mustFind(t, s, a.Key) // warm any cache
	next, err := s.BumpGeneration(ctx, user)
	if err != nil || next != 1 {
		t.Fatalf("BumpGeneration = %d, %v; want 1, nil", next, err)
	}
	if gen, _ := s.Generation(ctx, user); gen != 1 {
		t.Fatalf("Generation after bump = %d, want 1", gen)
	}
	mustNotFind(t, s, a.Key)
	mustNotFind(t, s, b.Key)
	mustList(t, s, user, "after the bump")
	fresh := NewRecord(user, c.Now())
	fresh.Generation = 1
	mustCommit(t, s, fresh)
	mustFind(t, s, fresh.Key)
}

func testGenerationStaleCommit(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	user := uniqueUser("alice")
	rec := NewRecord(user, c.Now())
	mustCommit(t, s, rec)
	if _, err := s.BumpGeneration(ctx, user); err != nil {
		t.Fatal(err)
	}
	// A request that loaded the session before the bump must not write it back.
	rec.Version = 2
	if err := s.Commit(ctx, rec); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("commit of a revoked session: err = %v, want ErrNotFound", err)
	}
	// A login that read the generation before the bump must not create a session.
	late := NewRecord(user, c.Now())
	if err := s.Commit(ctx, late); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Fatalf("create with a stale generation: err = %v, want ErrNotFound", err)
	}
	mustNotFind(t, s, rec.Key)
	mustNotFind(t, s, late.Key)
}

func testGenerationPerUser(t *testing.T, s cloakroom.Store, c *Clock) {
	ctx := context.Background()
	alice, bob := uniqueUser("alice"), uniqueUser("bob")
	b := NewRecord(bob, c.Now())
	mustCommit(t, s, b)
	for i := 0; i < 3; i++ {
		if _, err := s.BumpGeneration(ctx, alice); err != nil {
			t.Fatal(err)
		}
	}
	if gen, _ := s.Generation(ctx, alice); gen != 3 {
		t.Fatalf("Generation(alice) = %d, want 3", gen)
	}
	if gen, _ := s.Generation(ctx, bob); gen != 0 {
		t.Fatalf("Generation(bob) = %d, want 0", gen)
	}
	mustFind(t, s, b.Key)
}

func testAnonymous(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord("", c.Now())
	mustCommit(t, s, rec)
	sameRecord(t, mustFind(t, s, rec.Key), rec)
	rec.Version = 2
	mustCommit(t, s, rec)
	mustList(t, s, "", "anonymous sessions have no user index")
}

func testLargeValue(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	rec.Data = make([]byte, 1<<20)
	rand.Read(rec.Data)
	rec.UserAgent = string(bytes.Repeat([]byte("x"), 4096))
	mustCommit(t, s, rec)
	sameRecord(t, mustFind(t, s, rec.Key), rec)
}

// testConcurrentCommits has many writers race on one session. Every writer
// that reports success must have advanced the version by exactly one, so the
// final version equals one plus the number of successes.
func testConcurrentCommits(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	successes := 0
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				cur, found, err := s.Find(context.Background(), rec.Key)
				if err != nil || !found {
					t.Errorf("Find: found=%v err=%v", found, err)
					return
				}
				cur.Version++
				cur.Data = append(cur.Data, byte(w))
				err = s.Commit(context.Background(), cur)
				switch {
				case err == nil:
					mu.Lock()
					successes++
					mu.Unlock()
				case errors.Is(err, cloakroom.ErrConflict):
				default:
					t.Errorf("Commit: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := mustFind(t, s, rec.Key)
	if got.Version != uint64(1+successes) {
		t.Fatalf("final version = %d after %d successful commits, want %d", got.Version, successes, 1+successes)
	}
	if len(got.Data) != len(rec.Data)+successes {
		t.Fatalf("final data has %d appended bytes, want %d: a successful commit was lost", len(got.Data)-len(rec.Data), successes)
	}
}

func testConcurrentCreates(t *testing.T, s cloakroom.Store, c *Clock) {
	user := uniqueUser("alice")
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Commit(context.Background(), NewRecord(user, c.Now())); err != nil {
				t.Errorf("Commit: %v", err)
			}
		}()
	}
	wg.Wait()
	list, err := s.List(context.Background(), user)
	if err != nil || len(list) != n {
		t.Fatalf("List = %d sessions, %v; want %d", len(list), err, n)
	}
}

// testCanceledContext: a canceled call either fails with an error or
// answers correctly (a store may answer from memory without looking at
// ctx); it never reports a wrong answer, and writes either happen whole or
// not at all.
func testCanceledContext(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, found, err := s.Find(ctx, rec.Key)
	switch {
	case err != nil && found:
		t.Fatalf("Find with canceled context: found=true with error %v", err)
	case err == nil && !found:
		t.Fatal("Find with canceled context reported a live session missing without an error")
	case err == nil:
		sameRecord(t, got, rec)
	}
	next := rec
	next.Version, next.Data = 2, []byte("changed")
	if err := s.Commit(ctx, next); err == nil {
		sameRecord(t, mustFind(t, s, rec.Key), next)
	} else {
		if errors.Is(err, cloakroom.ErrConflict) || errors.Is(err, cloakroom.ErrNotFound) {
			t.Fatalf("canceled Commit: %v; want the context's error, not a verdict on the session", err)
		}
		sameRecord(t, mustFind(t, s, rec.Key), rec)
	}
	other := NewRecord(rec.UserID, c.Now())
	if err := s.Commit(ctx, other); err != nil {
		mustNotFind(t, s, other.Key)
	}
	if _, err := s.BumpGeneration(ctx, rec.UserID); err != nil {
		if g, _ := s.Generation(context.Background(), rec.UserID); g != 0 {
			t.Fatalf("canceled BumpGeneration failed with %v but moved the generation to %d", err, g)
		}
	}
}

// testVersionZero: version 0 is never valid; a store must not treat it as a
// blind overwrite that skips the version check.
func testVersionZero(t *testing.T, s cloakroom.Store, c *Clock) {
	rec := NewRecord(uniqueUser("alice"), c.Now())
	mustCommit(t, s, rec)
	bad := rec
	bad.Version, bad.Data = 0, []byte("overwritten")
	if err := s.Commit(context.Background(), bad); err == nil {
		t.Fatal("Commit with version 0 succeeded, want an error")
	}
	fresh := NewRecord(uniqueUser("alice"), c.Now())
	fresh.Version = 0
	if err := s.Commit(context.Background(), fresh); err == nil {
		t.Fatal("create with version 0 succeeded, want an error")
	}
	sameRecord(t, mustFind(t, s, rec.Key), rec)
	mustNotFind(t, s, fresh.Key)
}
