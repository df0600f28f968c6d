package dbsc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

var b64 = base64.RawURLEncoding

// signer is a test device key: it signs proofs as a browser would.
type signer struct {
	alg string
	ec  *ecdsa.PrivateKey
	rsa *rsa.PrivateKey
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func newES256(t testing.TB) *signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{alg: AlgES256, ec: k}
}

// newRS256 returns one 2048-bit key per test binary: generating is slow.
func newRS256(t testing.TB) *signer {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return &signer{alg: AlgRS256, rsa: rsaKey}
}

func (s *signer) jwk() map[string]any {
	if s.ec != nil {
		return map[string]any{"kty": "EC", "crv": "P-256",
			"x": b64.EncodeToString(s.ec.X.FillBytes(make([]byte, 32))),
			"y": b64.EncodeToString(s.ec.Y.FillBytes(make([]byte, 32)))}
	}
	return map[string]any{"kty": "RSA", "n": b64.EncodeToString(s.rsa.N.Bytes()),
		"e": b64.EncodeToString(big.NewInt(int64(s.rsa.E)).Bytes())}
}

func (s *signer) jwkJSON() []byte {
	b, _ := json.Marshal(s.jwk())
	return b
}

// signRaw signs the JSON texts given as they are.
func (s *signer) signRaw(t testing.TB, header, payload string) string {
	t.Helper()
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	if s.ec != nil {
		r, ss, err := ecdsa.Sign(rand.Reader, s.ec, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...)
	} else {
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, s.rsa, crypto.SHA256, digest[:]); err != nil {
			t.Fatal(err)
		}
	}
	return input + "." + b64.EncodeToString(sig)
}

func (s *signer) sign(t testing.TB, header, payload map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(payload)
	return s.signRaw(t, string(h), string(p))
}

// registration signs a registration proof with the jwk in the header.
func (s *signer) registration(t testing.TB, challenge string) string {
	return s.sign(t, map[string]any{"alg": s.alg, "typ": "dbsc+jwt", "jwk": s.jwk()},
		map[string]any{"jti": challenge, "aud": "https://localhost/dbsc/register", "iat": 1765100000, "authorization": "auth-code"})
}

func (s *signer) refresh(t testing.TB, challenge string) string {
	return s.sign(t, map[string]any{"alg": s.alg, "typ": "dbsc+jwt"}, map[string]any{"jti": challenge})
}

func TestVerifyRegistrationAndRefresh(t *testing.T) {
	for _, s := range []*signer{newES256(t), newRS256(t)} {
		t.Run(s.alg, func(t *testing.T) {
			proof, err := VerifyRegistration(s.registration(t, "challenge-1"))
			if err != nil {
				t.Fatal(err)
			}
			if proof.Algorithm != s.alg || proof.Challenge != "challenge-1" || proof.Authorization != "auth-code" ||
				!proof.IssuedAt.Equal(time.Unix(1765100000, 0)) {
				t.Fatalf("proof %+v", proof)
			}
			want, err := CanonicalJWK(s.jwkJSON())
			if err != nil || string(proof.JWK) != string(want) {
				t.Fatalf("JWK %s, want %s (%v)", proof.JWK, want, err)
			}
			refreshed, err := VerifyRefresh(s.refresh(t, "challenge-2"), proof.JWK)
			if err != nil {
				t.Fatal(err)
			}
			if refreshed.Challenge != "challenge-2" || string(refreshed.JWK) != string(proof.JWK) || !refreshed.IssuedAt.IsZero() {
				t.Fatalf("refresh %+v", refreshed)
			}
		})
	}
}

// The specification's own example puts the jwk in the payload and sends
// iat as a string.
func TestVerifyRegistrationJWKInPayload(t *testing.T) {
	s := newES256(t)
	token := s.sign(t, map[string]any{"alg": "ES256", "typ": "dbsc+jwt"},
		map[string]any{"aud": "https://example.com/reg", "jti": "cv", "iat": "1725579055", "jwk": s.jwk(), "authorization": "ac"})
	proof, err := VerifyRegistration(token)
	if err != nil {
		t.Fatal(err)
	}
	if proof.Challenge != "cv" || proof.Authorization != "ac" || proof.IssuedAt.Unix() != 1725579055 {
		t.Fatalf("proof %+v", proof)
	}
}

func TestRefreshRefusesAnotherKey(t *testing.T) {
	victim, attacker := newES256(t), newES256(t)
	stored, err := CanonicalJWK(victim.jwkJSON())
	if err != nil {
		t.Fatal(err)
	}
	// Signed by another key, with no jwk: the signature fails.
	if _, err := VerifyRefresh(attacker.refresh(t, "c"), stored); !errors.Is(err, ErrSignature) {
		t.Fatalf("another key's refresh: %v", err)
	}
	// Signed by another key that it carries: the key is refused.
	if _, err := VerifyRefresh(attacker.registration(t, "c"), stored); !errors.Is(err, ErrKey) {
		t.Fatalf("refresh carrying another key: %v", err)
	}
	// An RSA key's proof against a stored EC key.
	if _, err := VerifyRefresh(newRS256(t).refresh(t, "c"), stored); !errors.Is(err, ErrKey) {
		t.Fatalf("RS256 proof against an EC key: %v", err)
	}
	// The victim's own registration proof repeats the stored key: accepted.
	if _, err := VerifyRefresh(victim.registration(t, "c"), stored); err != nil {
		t.Fatalf("refresh repeating the stored key: %v", err)
	}
	if _, err := VerifyRefresh(victim.refresh(t, "c"), []byte(`{"kty":"EC"}`)); !errors.Is(err, ErrKey) {
		t.Fatalf("bad stored key: %v", err)
	}
}

func TestTamperedPayload(t *testing.T) {
	for _, s := range []*signer{newES256(t), newRS256(t)} {
		token := s.registration(t, "challenge-1")
		parts := strings.Split(token, ".")
		parts[1] = b64.EncodeToString([]byte(`{"jti":"challenge-2"}`))
		if _, err := VerifyRegistration(strings.Join(parts, ".")); !errors.Is(err, ErrSignature) {
			t.Fatalf("%s tampered payload: %v", s.alg, err)
		}
	}
}

// TestChromiumShapedProof: the registration Chromium 156 sends (D3's
// capture): the JWT unquoted in Secure-Session-Response, the jwk in the
// header, only jti and authorization in the payload.
func TestChromiumShapedProof(t *testing.T) {
	s := newES256(t)
	token := s.sign(t, map[string]any{"alg": "ES256", "jwk": s.jwk(), "typ": "dbsc+jwt"},
		map[string]any{"authorization": "authcode1", "jti": "regchal1"})
	raw, err := ParseResponse(token)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := VerifyRegistration(raw)
	if err != nil || proof.Challenge != "regchal1" || proof.Authorization != "authcode1" || !proof.IssuedAt.IsZero() {
		t.Fatalf("%+v, %v", proof, err)
	}
	refresh, err := ParseResponse(s.sign(t, map[string]any{"alg": "ES256", "typ": "dbsc+jwt"}, map[string]any{"jti": "refchal2"}))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := VerifyRefresh(refresh, proof.JWK); err != nil || p.Challenge != "refchal2" {
		t.Fatalf("%+v, %v", p, err)
	}
}
