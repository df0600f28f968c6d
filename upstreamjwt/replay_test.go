package upstreamjwt_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

var epoch = time.Unix(1_800_000_000, 0)

// claimsAt are the claims of a token with the given jti that expires at
// exp, as Verify returns them, each for a user of its own (so only the
// cache's size limits them; see TestReplayCacheSubjectShare).
func claimsAt(jti string, exp time.Time) upstreamjwt.Claims {
	return upstreamjwt.Claims{ID: jti, Subject: "user-" + jti, IssuedAt: exp.Add(-time.Minute), NotBefore: exp.Add(-time.Minute), ExpiresAt: exp}
}

// TestReplayCacheSubjectShare: one user sending requests as fast as the
// gateway lets them cannot fill the cache and so lock every other user out
// of the upstream: past their share, only their own tokens are refused.
func TestReplayCacheSubjectShare(t *testing.T) {
	const size = 1000
	c := upstreamjwt.NewReplayCache(size)
	exp := epoch.Add(time.Minute)
	flood := func(i int) upstreamjwt.Claims {
		cl := claimsAt("flood-"+strconv.Itoa(i), exp)
		cl.Subject = "mallory"
		return cl
	}
	accepted := 0
	for i := range size {
		err := c.Check(flood(i), epoch)
		if err == nil {
			accepted++
			continue
		}
		if !errors.Is(err, upstreamjwt.ErrInvalidToken) || !errors.Is(err, upstreamjwt.ErrReplayCacheFull) {
			t.Fatalf("flooding token %d: %v, want ErrReplayCacheFull", i, err)
		}
	}
	if accepted == 0 || accepted > size/upstreamjwt.ReplayCacheSubjectShare {
		t.Errorf("one user got %d of %d entries, want 1 to %d", accepted, size, size/upstreamjwt.ReplayCacheSubjectShare)
	}
	for i := range 50 {
		cl := claimsAt("alice-"+strconv.Itoa(i), exp)
		cl.Subject = "alice"
		if err := c.Check(cl, epoch); err != nil {
			t.Fatalf("another user's token %d after the flood: %v", i, err)
		}
	}
	// The flood's tokens are still remembered: refused as replays.
	if err := c.Check(flood(0), epoch); !errors.Is(err, upstreamjwt.ErrTokenReplayed) {
		t.Errorf("replayed flood token: %v, want ErrTokenReplayed", err)
	}
	// Once they expire, the user gets their share back.
	later := exp.Add(upstreamjwt.VerifyLeeway + time.Second)
	cl := claimsAt("flood-after", later.Add(time.Minute))
	cl.Subject = "mallory"
	if err := c.Check(cl, later); err != nil {
		t.Errorf("the flooding user's token after theirs expired: %v", err)
	}
}

// TestReplayCacheFullIsCheap: once the cache is full of live tokens, every
// further token is refused (fail closed) without looking at the entries it
// holds: an attacker who fills the cache does not make each verification
// walk all of it.
func TestReplayCacheFullIsCheap(t *testing.T) {
	const size = 1000
	c := upstreamjwt.NewReplayCache(size)
	exp := epoch.Add(time.Minute)
	for i := range size {
		if err := c.Check(claimsAt("fill-"+strconv.Itoa(i), exp), epoch); err != nil {
			t.Fatalf("filling %d: %v", i, err)
		}
	}
	base := c.Examined()
	const extra = 500
	for i := range extra {
		err := c.Check(claimsAt("more-"+strconv.Itoa(i), exp), epoch)
		if !errors.Is(err, upstreamjwt.ErrInvalidToken) || !errors.Is(err, upstreamjwt.ErrReplayCacheFull) {
			t.Fatalf("token %d into a full cache: %v, want ErrReplayCacheFull", i, err)
		}
	}
	// One look at the soonest expiry per Check is the budget.
	if work := c.Examined() - base; work > extra {
		t.Errorf("%d refused Checks looked at %d entries, want at most %d", extra, work, extra)
	}
	// The filling tokens are still remembered.
	if err := c.Check(claimsAt("fill-7", exp), epoch); !errors.Is(err, upstreamjwt.ErrTokenReplayed) {
		t.Errorf("replayed jti in a full cache: %v, want ErrTokenReplayed", err)
	}
}

// TestReplayCacheEvictsOnlyExpired: entries are forgotten only once their
// token can no longer verify (exp + VerifyLeeway), each looked at a bounded
// number of times, and a jti is refused for as long as its token is valid.
func TestReplayCacheEvictsOnlyExpired(t *testing.T) {
	const size = 100
	c := upstreamjwt.NewReplayCache(size)
	now := epoch
	// Tokens minted one per second, each valid for 60 s: the cache holds
	// the live ones and forgets the rest as time passes.
	const n = 2000
	for i := range n {
		now = epoch.Add(time.Duration(i) * time.Second)
		if err := c.Check(claimsAt("jti-"+strconv.Itoa(i), now.Add(60*time.Second)), now); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		// Every still-valid earlier token is refused as a replay.
		if i >= 10 {
			old := i - 10
			exp := epoch.Add(time.Duration(old)*time.Second + 60*time.Second)
			if err := c.Check(claimsAt("jti-"+strconv.Itoa(old), exp), now); !errors.Is(err, upstreamjwt.ErrTokenReplayed) {
				t.Fatalf("replay of %d at %d: %v", old, i, err)
			}
		}
	}
	// Live tokens: those with exp+leeway >= now, about 65.
	if got, max := c.Len(), 60+int(upstreamjwt.VerifyLeeway/time.Second)+1; got > max {
		t.Errorf("cache holds %d entries, want at most %d live ones", got, max)
	}
	// Each entry is examined a bounded number of times when it is evicted,
	// plus one look per Check that stops at a live one.
	if work := c.Examined(); work > 2*n+n {
		t.Errorf("%d Checks examined %d entries, want O(Checks)", n, work)
	}

	// At exactly exp+leeway the entry is still there; just after, gone.
	c2 := upstreamjwt.NewReplayCache(1)
	exp := epoch.Add(time.Minute)
	if err := c2.Check(claimsAt("a", exp), epoch); err != nil {
		t.Fatal(err)
	}
	until := exp.Add(upstreamjwt.VerifyLeeway)
	if err := c2.Check(claimsAt("b", exp), until); !errors.Is(err, upstreamjwt.ErrReplayCacheFull) {
		t.Errorf("full cache at exp+leeway: %v, want ErrReplayCacheFull", err)
	}
	if err := c2.Check(claimsAt("b", exp.Add(time.Minute)), until.Add(time.Nanosecond)); err != nil {
		t.Errorf("after the only entry expired: %v", err)
	}
}

// TestReplayCacheNeedsExpiry: a jti without an expiry would be forgotten at
// once; it is refused instead.
func TestReplayCacheNeedsExpiry(t *testing.T) {
	c := upstreamjwt.NewReplayCache(10)
	if err := c.Check(upstreamjwt.Claims{ID: "x"}, epoch); !errors.Is(err, upstreamjwt.ErrInvalidToken) {
		t.Errorf("no exp: %v, want ErrInvalidToken", err)
	}
	if err := c.Check(upstreamjwt.Claims{ExpiresAt: epoch.Add(time.Minute)}, epoch); !errors.Is(err, upstreamjwt.ErrInvalidToken) {
		t.Errorf("no jti: %v, want ErrInvalidToken", err)
	}
}
