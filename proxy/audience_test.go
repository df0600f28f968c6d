package proxy_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// TestEachRouteHasItsOwnAudience: the internal JWT upstream A received does
// not verify at upstream B, whose audience differs (default: the route's
// prefix, or the route's configured Audience); and an upstream using the
// replay cache accepts each token once.
func TestEachRouteHasItsOwnAudience(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	clock := newClock()
	signer := newSigner(t, upstreamjwt.SignerConfig{})
	routeB := b.route(t, "/b/")
	routeB.Audience = "billing"
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{a.route(t, "/a/"), routeB}, Signer: signer, Now: clock.Now})
	gw := startGateway(t, p, withIdentity(proxy.Identity{User: "alice"}))

	tokenAt := func(path string) string {
		status, e, _ := get(t, gw.URL+path, nil)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d", path, status)
		}
		return strings.TrimPrefix(e.Header.Get("Authorization"), "Bearer ")
	}
	fromA, fromB := tokenAt("/a/x"), tokenAt("/b/x")
	if _, err := upstreamjwt.Verify(fromA, signer.JWKS(), "/a/", clock.Now()); err != nil {
		t.Errorf("A's token at A: %v", err)
	}
	if _, err := upstreamjwt.Verify(fromA, signer.JWKS(), "billing", clock.Now()); !errors.Is(err, upstreamjwt.ErrTokenAudience) {
		t.Errorf("A's token at B: %v, want ErrTokenAudience", err)
	}
	claims, err := upstreamjwt.Verify(fromB, signer.JWKS(), "billing", clock.Now())
	if err != nil {
		t.Fatalf("B's token at B: %v", err)
	}
	if _, err := upstreamjwt.Verify(fromB, signer.JWKS(), "/a/", clock.Now()); !errors.Is(err, upstreamjwt.ErrTokenAudience) {
		t.Errorf("B's token at A: %v, want ErrTokenAudience", err)
	}

	cache := upstreamjwt.NewReplayCache(0)
	if err := cache.Check(claims, clock.Now()); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := cache.Check(claims, clock.Now()); !errors.Is(err, upstreamjwt.ErrTokenReplayed) || !errors.Is(err, upstreamjwt.ErrInvalidToken) {
		t.Errorf("replayed jti: %v, want ErrTokenReplayed", err)
	}
}
