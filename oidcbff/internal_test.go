package oidcbff

import (
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestExpiryBounded: an absurd expires_in (mockoidc sends nanoseconds)
// must not overflow into the past, which would refresh on every request.
func TestExpiryBounded(t *testing.T) {
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	c := &Client{now: func() time.Time { return now }}
	for in, want := range map[int64]time.Time{
		0:            {},
		-5:           {},
		300:          now.Add(5 * time.Minute),
		600000000000: now.Add(maxExpiresIn * time.Second),
	} {
		if got := c.expiry(&oauth2.Token{ExpiresIn: in}); !got.Equal(want) {
			t.Errorf("expires_in %d: expiry %v, want %v", in, got, want)
		}
	}
}
