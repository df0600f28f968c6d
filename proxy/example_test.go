package proxy_test

import (
	"fmt"
	"time"

	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// The gateway signs a short-lived token for each proxied request; an
// upstream written in Go checks it against the gateway's JWK set.
func ExampleVerify() {
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		panic(err)
	}
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{
		Issuer:   "https://gateway.example",
		Audience: "orders-api",
	})
	if err != nil {
		panic(err)
	}
	now := time.Now()
	token, err := signer.Sign(proxy.Identity{User: "alice", Email: "alice@example.com", Groups: []string{"admins", "dev"}}, now)
	if err != nil {
		panic(err)
	}

	// Upstream side: jwks would be fetched from the gateway's JWKSHandler.
	jwks := signer.JWKS()
	claims, err := upstreamjwt.Verify(token, jwks, "orders-api", now)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.Email, claims.Groups, claims.ExpiresAt.Sub(claims.IssuedAt))

	_, err = upstreamjwt.Verify(token, jwks, "orders-api", now.Add(time.Minute))
	fmt.Println(err != nil)
	// Output:
	// alice alice@example.com [admins dev] 30s
	// true
}
