package upstreamjwt_test

import (
	"fmt"
	"time"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// An upstream checks the token the gateway sent in Authorization: Bearer
// against the gateway's key set (fetched from its JWKS endpoint and
// cached), for the audience of its own route.
func ExampleVerify() {
	key, _ := upstreamjwt.GenerateKey()
	signer, _ := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "https://gateway.example", Audience: "notes-api"})
	now := time.Now()
	token, _ := signer.Sign(upstreamjwt.Identity{User: "alice", Groups: []string{"editors"}}, now)

	claims, err := upstreamjwt.Verify(token, signer.JWKS(), "notes-api", now)
	fmt.Println(claims.Subject, claims.Groups, err)
	_, err = upstreamjwt.Verify(token, signer.JWKS(), "billing-api", now)
	fmt.Println(err != nil)
	// Output:
	// alice [editors] <nil>
	// true
}
