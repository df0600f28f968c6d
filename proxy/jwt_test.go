package proxy_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// TestTokenThroughProxyVerifiesAgainstJWKS follows the whole path: the
// proxy mints a token for the route, the upstream receives it and checks
// it against the signer's key set (its serving over HTTP is the signer's
// own test).
func TestTokenThroughProxyVerifiesAgainstJWKS(t *testing.T) {
	clock := newClock()
	signer := newSigner(t, upstreamjwt.SignerConfig{Issuer: "https://gateway.test", Audience: "/api/", TTL: 45 * time.Second})
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}, Signer: signer, Now: clock.Now})
	gw := startGateway(t, p, withIdentity(proxy.Identity{User: "alice", Email: "alice@example.test", Groups: []string{"dev"}}))

	_, e, _ := get(t, gw.URL+"/api/orders", nil)
	token := strings.TrimPrefix(e.Header.Get("Authorization"), "Bearer ")
	jwks := signer.JWKS()

	claims, err := upstreamjwt.Verify(token, jwks, "/api/", clock.Now()) // the route's audience
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if claims.Issuer != "https://gateway.test" || claims.Audience != "/api/" || claims.Subject != "alice" ||
		claims.Email != "alice@example.test" || len(claims.Groups) != 1 || claims.Groups[0] != "dev" || claims.ID == "" {
		t.Errorf("claims = %+v", claims)
	}
	if !claims.IssuedAt.Equal(clock.Now()) || !claims.NotBefore.Equal(clock.Now()) {
		t.Errorf("iat/nbf = %v/%v, want %v", claims.IssuedAt, claims.NotBefore, clock.Now())
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt); life != 45*time.Second || life > 60*time.Second {
		t.Errorf("lifetime %v", life)
	}

	var header map[string]any
	parts := strings.Split(token, ".")
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(hb, &header); err != nil || len(header) != 3 || header["alg"] != "EdDSA" ||
		header["typ"] != "JWT" || header["kid"] != signer.KeyID() {
		t.Errorf("header = %s", hb)
	}

	// A second request gets a fresh token.
	_, e2, _ := get(t, gw.URL+"/api/orders", nil)
	if e2.Header.Get("Authorization") == e.Header.Get("Authorization") {
		t.Error("tokens are reused across requests")
	}

	// The clock moves on: valid until exp+leeway, refused from then on.
	if _, err := upstreamjwt.Verify(token, jwks, "/api/", clock.Now().Add(45*time.Second+upstreamjwt.VerifyLeeway-time.Nanosecond)); err != nil {
		t.Errorf("just before expiry + leeway: %v", err)
	}
	clock.Advance(45*time.Second + upstreamjwt.VerifyLeeway)
	if _, err := upstreamjwt.Verify(token, jwks, "/api/", clock.Now()); !errors.Is(err, upstreamjwt.ErrTokenExpired) || !errors.Is(err, upstreamjwt.ErrInvalidToken) {
		t.Errorf("after expiry: %v, want ErrTokenExpired", err)
	}
}
