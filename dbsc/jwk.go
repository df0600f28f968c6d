package dbsc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

// Key size bounds. A modulus below 2048 bits is breakable or close to it;
// above 8192 bits it only costs the verifier time. The public exponent must
// be 65537, the one every browser and TPM uses, so no key with a tiny or
// even exponent, or one chosen to slow verification, gets in.
const (
	MinRSABits  = 2048
	MaxRSABits  = 8192
	rsaExponent = 65537
	// MaxJWKSize bounds a JWK's JSON: an 8192-bit RSA key is about 1.4 KiB.
	MaxJWKSize = 4 << 10
)

// publicKey is a parsed, accepted JWK: the key, the one algorithm it may
// sign with, and its canonical JSON.
type publicKey struct {
	algorithm string
	ec        *ecdsa.PublicKey
	rsa       *rsa.PublicKey
	canonical []byte
}

// privateMembers are JWK members that carry private key material: a proof
// that sends them has leaked its key, and nothing from it is trusted.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseJWK parses a JWK (RFC 7517) holding a P-256 or RSA public key, with
// the checks the package doc lists. Every failure wraps ErrKey.
func parseJWK(raw []byte) (*publicKey, error) {
	if len(raw) > MaxJWKSize {
		return nil, fmt.Errorf("%w: jwk larger than %d bytes", ErrKey, MaxJWKSize)
	}
	members, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: jwk: %v", ErrKey, err)
	}
	for _, name := range privateMembers {
		if _, ok := members[name]; ok {
			return nil, fmt.Errorf("%w: jwk carries private key material (%q)", ErrKey, name)
		}
	}
	kty, err := stringMember(members, "kty")
	if err != nil {
		return nil, fmt.Errorf("%w: jwk: %v", ErrKey, err)
	}
	var key *publicKey
	switch kty {
	case "EC":
		key, err = parseECKey(members)
	case "RSA":
		key, err = parseRSAKey(members)
	default:
		return nil, fmt.Errorf("%w: jwk key type %q (want EC or RSA)", ErrKey, kty)
	}
	if err != nil {
		return nil, err
	}
	if _, present := members["alg"]; present {
		alg, err := stringMember(members, "alg")
		if err != nil || alg != key.algorithm {
			return nil, fmt.Errorf("%w: jwk alg does not match its key type", ErrKey)
		}
	}
	return key, nil
}

func parseECKey(members map[string]json.RawMessage) (*publicKey, error) {
	crv, err := stringMember(members, "crv")
	if err != nil {
		return nil, fmt.Errorf("%w: jwk: %v", ErrKey, err)
	}
	if crv != "P-256" {
		return nil, fmt.Errorf("%w: curve %q (want P-256)", ErrKey, crv)
	}
	x, err := fixedBytesMember(members, "x", 32)
	if err != nil {
		return nil, err
	}
	y, err := fixedBytesMember(members, "y", 32)
	if err != nil {
		return nil, err
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("%w: the point is not on P-256", ErrKey)
	}
	// RFC 7638 member order, so the canonical form is also the input of
	// the key's thumbprint.
	canonical := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`,
		base64.RawURLEncoding.EncodeToString(x), base64.RawURLEncoding.EncodeToString(y))
	return &publicKey{algorithm: AlgES256, ec: pub, canonical: []byte(canonical)}, nil
}

func parseRSAKey(members map[string]json.RawMessage) (*publicKey, error) {
	n, err := integerMember(members, "n")
	if err != nil {
		return nil, err
	}
	e, err := integerMember(members, "e")
	if err != nil {
		return nil, err
	}
	bits := len(n)*8 - leadingZeroBits(n[0])
	if bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("%w: RSA modulus of %d bits (want %d to %d)", ErrKey, bits, MinRSABits, MaxRSABits)
	}
	if n[len(n)-1]&1 == 0 {
		return nil, fmt.Errorf("%w: even RSA modulus", ErrKey)
	}
	if len(e) != 3 || e[0] != 1 || e[1] != 0 || e[2] != 1 {
		return nil, fmt.Errorf("%w: RSA public exponent is not 65537", ErrKey)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: rsaExponent}
	canonical := fmt.Sprintf(`{"e":"AQAB","kty":"RSA","n":"%s"}`, base64.RawURLEncoding.EncodeToString(n))
	return &publicKey{algorithm: AlgRS256, rsa: pub, canonical: []byte(canonical)}, nil
}

func leadingZeroBits(b byte) int {
	n := 0
	for mask := byte(0x80); mask != 0 && b&mask == 0; mask >>= 1 {
		n++
	}
	return n
}

// fixedBytesMember decodes a base64url member that must be exactly size
// bytes (an EC coordinate, left-padded as RFC 7518 §6.2.1.2 requires).
func fixedBytesMember(members map[string]json.RawMessage, name string, size int) ([]byte, error) {
	text, err := stringMember(members, name)
	if err != nil {
		return nil, fmt.Errorf("%w: jwk: %v", ErrKey, err)
	}
	b, err := decodeSegment(text)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("%w: jwk %q is not %d bytes of canonical base64url", ErrKey, name, size)
	}
	return b, nil
}

// integerMember decodes a base64url unsigned big-endian integer in its
// minimal form (RFC 7518 §6.3.1: no leading zero octets).
func integerMember(members map[string]json.RawMessage, name string) ([]byte, error) {
	text, err := stringMember(members, name)
	if err != nil {
		return nil, fmt.Errorf("%w: jwk: %v", ErrKey, err)
	}
	b, err := decodeSegment(text)
	if err != nil || len(b) == 0 || b[0] == 0 {
		return nil, fmt.Errorf("%w: jwk %q is not a minimal base64url integer", ErrKey, name)
	}
	return b, nil
}

// verify checks signature over signingInput with the key.
func (k *publicKey) verify(signingInput, signature []byte) bool {
	digest := sha256Sum(signingInput)
	switch {
	case k.ec != nil:
		// JOSE signs ES256 as r||s, 32 bytes each (RFC 7518 §3.4), not DER.
		if len(signature) != 64 {
			return false
		}
		r := new(big.Int).SetBytes(signature[:32])
		s := new(big.Int).SetBytes(signature[32:])
		return ecdsa.Verify(k.ec, digest, r, s)
	case k.rsa != nil:
		return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest, signature) == nil
	}
	return false
}

// CanonicalJWK parses a JWK as a registration proof's key is parsed and
// returns its canonical form, the one Proof.JWK holds: only kty, crv, x, y
// or kty, n, e, in RFC 7638 order, so equal keys have equal bytes and its
// SHA-256 is the key's RFC 7638 thumbprint. Errors wrap ErrKey.
func CanonicalJWK(jwk []byte) (json.RawMessage, error) {
	key, err := parseJWK(bytes.TrimSpace(jwk))
	if err != nil {
		return nil, err
	}
	return json.RawMessage(key.canonical), nil
}
