package upstreamjwt_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// FuzzVerify feeds arbitrary tokens and key sets to Verify. Nothing but the
// token the key really signed may ever verify.
func FuzzVerify(f *testing.F) {
	seed := sha256.Sum256([]byte("fuzz key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "gw", Audience: "api"})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	// Signed by hand with a fixed jti: Sign's random jti would differ in
	// every fuzz worker process.
	signingInput := b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"`+signer.KeyID()+`"}`)) + "." +
		b64.EncodeToString([]byte(`{"iss":"gw","aud":"api","sub":"alice","groups":["g"],"iat":1800000000,"nbf":1800000000,"exp":1800000030,"jti":"fixed"}`))
	valid := signingInput + "." + b64.EncodeToString(ed25519.Sign(key, []byte(signingInput)))
	jwks := signer.JWKS()
	parts := strings.Split(valid, ".")
	f.Add(valid, jwks)
	f.Add(parts[0]+"."+parts[1]+".", jwks)
	f.Add("eyJhbGciOiJub25lIn0."+parts[1]+".", jwks)
	f.Add(valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"`+signer.KeyID()+`"}]}`))
	f.Add("a.b.c", []byte(`{"keys":[]}`))
	f.Add("..", []byte(`null`))
	f.Fuzz(func(t *testing.T, token string, set []byte) {
		c, err := upstreamjwt.Verify(token, set, "api", now)
		if err != nil {
			if !errors.Is(err, upstreamjwt.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if token != valid {
			t.Fatalf("forged token verified: %q with %q", token, set)
		}
		if c.Subject != "alice" || c.Audience != "api" || c.ExpiresAt.Sub(c.IssuedAt) > upstreamjwt.MaxTokenTTL {
			t.Fatalf("claims %+v", c)
		}
	})
}
