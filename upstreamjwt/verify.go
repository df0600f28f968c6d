package upstreamjwt

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// VerifyLeeway is the clock skew [Verify] tolerates between the gateway and
// the upstream when checking "exp", "nbf" and "iat".
const VerifyLeeway = 5 * time.Second

// maxTokenLength bounds the work Verify does on hostile input; a token for
// a user in many groups stays far below it.
const maxTokenLength = 16 << 10

// Verification errors. Every error from [Verify] wraps ErrInvalidToken, and
// most also wrap one of the more specific errors below.
var (
	ErrInvalidToken     = errors.New("upstreamjwt: invalid token")
	ErrInvalidJWKS      = errors.New("upstreamjwt: invalid JWK set")
	ErrUnknownKey       = errors.New("upstreamjwt: token signed with an unknown key")
	ErrTokenSignature   = errors.New("upstreamjwt: token signature does not verify")
	ErrTokenExpired     = errors.New("upstreamjwt: token expired")
	ErrTokenNotYetValid = errors.New("upstreamjwt: token not yet valid")
	ErrTokenAudience    = errors.New("upstreamjwt: token audience mismatch")
)

// Claims are the verified contents of a token minted by [Signer.Sign].
type Claims struct {
	Issuer    string
	Audience  string
	Subject   string // the user, Identity.User
	Email     string
	Groups    []string
	AMR       []string // "amr": how the user signed in (RFC 8176)
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
	ID        string // "jti", unique per token
}

// Identity returns the Identity the token was minted for.
func (c Claims) Identity() Identity {
	return Identity{User: c.Subject, Email: c.Email, Groups: c.Groups, AMR: c.AMR}
}

type joseHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks a token minted by [Signer.Sign] against jwks (the bytes
// served by [Signer.JWKSHandler]) at time now, and returns its claims.
//
// It is strict: the header must be {"alg":"EdDSA","typ":"JWT","kid":...}
// with no "crit"; the kid must name an Ed25519 key in jwks; iss, sub, jti,
// iat, nbf and exp must be present; aud must contain audience; the token
// must be valid at now within [VerifyLeeway]; and its lifetime must not
// exceed [MaxTokenTTL]. Verify checks that iss is present but not its value:
// callers that trust one issuer compare Claims.Issuer.
func Verify(token string, jwks []byte, audience string, now time.Time) (Claims, error) {
	if audience == "" {
		return Claims{}, fmt.Errorf("%w: no audience to check against", ErrInvalidToken)
	}
	if len(token) > maxTokenLength {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxTokenLength)
	}
	headerB64, rest, ok1 := strings.Cut(token, ".")
	payloadB64, sigB64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sigB64, ".") {
		return Claims{}, fmt.Errorf("%w: not a compact JWS (three dot-separated parts)", ErrInvalidToken)
	}
	enc := base64.RawURLEncoding.Strict()

	var h joseHeader
	if err := decodePart(headerB64, "header", &h); err != nil {
		return Claims{}, err
	}
	if h.Alg != "EdDSA" {
		return Claims{}, fmt.Errorf("%w: alg %q, want EdDSA", ErrInvalidToken, h.Alg)
	}
	if h.Typ != "JWT" {
		return Claims{}, fmt.Errorf("%w: typ %q, want JWT", ErrInvalidToken, h.Typ)
	}
	if h.Crit != nil {
		return Claims{}, fmt.Errorf("%w: crit header parameters are not supported", ErrInvalidToken)
	}
	if h.Kid == "" {
		return Claims{}, fmt.Errorf("%w: no kid", ErrInvalidToken)
	}
	pub, err := findKey(jwks, h.Kid)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}

	sig, err := enc.DecodeString(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Claims{}, fmt.Errorf("%w: %w: malformed signature", ErrInvalidToken, ErrTokenSignature)
	}
	signed := token[:len(headerB64)+1+len(payloadB64)]
	if !ed25519.Verify(pub, []byte(signed), sig) {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenSignature)
	}

	var w wireClaims
	if err := decodePart(payloadB64, "payload", &w); err != nil {
		return Claims{}, err
	}
	return checkClaims(&w, audience, now)
}

// decodePart decodes one base64url part of a compact JWS, a JSON object,
// into v; what names the part in the error.
func decodePart(b64, what string, v any) error {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(b64)
	if err != nil {
		return fmt.Errorf("%w: %s is not base64url", ErrInvalidToken, what)
	}
	if err := decodeObject(raw, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidToken, what, err)
	}
	return nil
}

// decodeObject decodes a JSON object into v, refusing anything that is not
// exactly one object (json.Unmarshal accepts "null" for a struct).
func decodeObject(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(data, v)
}

func checkClaims(w *wireClaims, audience string, now time.Time) (Claims, error) {
	switch {
	case w.Issuer == "":
		return Claims{}, fmt.Errorf("%w: no iss", ErrInvalidToken)
	case w.Subject == "":
		return Claims{}, fmt.Errorf("%w: no sub", ErrInvalidToken)
	case w.ID == "":
		return Claims{}, fmt.Errorf("%w: no jti", ErrInvalidToken)
	case w.IssuedAt == nil || w.NotBefore == nil || w.ExpiresAt == nil:
		return Claims{}, fmt.Errorf("%w: iat, nbf and exp are required", ErrInvalidToken)
	}
	aud, err := matchAudience(w.Audience, audience)
	if err != nil {
		return Claims{}, err
	}
	iat, nbf, exp := *w.IssuedAt, *w.NotBefore, *w.ExpiresAt
	if exp <= iat || exp-iat > int64(MaxTokenTTL/time.Second) {
		return Claims{}, fmt.Errorf("%w: lifetime %ds outside 1..%d", ErrInvalidToken, exp-iat, int64(MaxTokenTTL/time.Second))
	}
	if nbf > exp {
		return Claims{}, fmt.Errorf("%w: nbf after exp", ErrInvalidToken)
	}
	c := Claims{
		Issuer:    w.Issuer,
		Audience:  aud,
		Subject:   w.Subject,
		Email:     w.Email,
		Groups:    w.Groups,
		AMR:       w.AMR,
		IssuedAt:  time.Unix(iat, 0),
		NotBefore: time.Unix(nbf, 0),
		ExpiresAt: time.Unix(exp, 0),
		ID:        w.ID,
	}
	if !now.Before(c.ExpiresAt.Add(VerifyLeeway)) {
		return Claims{}, fmt.Errorf("%w: %w at %s", ErrInvalidToken, ErrTokenExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore.Add(-VerifyLeeway)) || now.Before(c.IssuedAt.Add(-VerifyLeeway)) {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenNotYetValid)
	}
	return c, nil
}

// matchAudience accepts "aud" as a string or an array of strings (RFC 7519
// section 4.1.3) and returns the matching value.
func matchAudience(raw json.RawMessage, want string) (string, error) {
	if len(raw) == 0 {
		return "", fmt.Errorf("%w: %w: no aud", ErrInvalidToken, ErrTokenAudience)
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == want {
			return one, nil
		}
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenAudience)
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return "", fmt.Errorf("%w: aud is neither a string nor an array of strings", ErrInvalidToken)
	}
	for _, a := range many {
		if a == want {
			return a, nil
		}
	}
	return "", fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenAudience)
}

// findKey returns the Ed25519 key named kid in a JWK set. Keys of other
// types are skipped; a key with this kid that is not a usable Ed25519
// signature key is an error.
func findKey(jwks []byte, kid string) (ed25519.PublicKey, error) {
	var set struct {
		Keys []publicJWK `json:"keys"`
	}
	if err := decodeObject(jwks, &set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJWKS, err)
	}
	for _, k := range set.Keys {
		if k.Kid != kid {
			continue
		}
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			return nil, fmt.Errorf("%w: key %q is %s/%s, not OKP/Ed25519", ErrUnknownKey, kid, k.Kty, k.Crv)
		}
		if k.Use != "" && k.Use != "sig" || k.Alg != "" && k.Alg != "EdDSA" {
			return nil, fmt.Errorf("%w: key %q is not an EdDSA signature key", ErrUnknownKey, kid)
		}
		x, err := base64.RawURLEncoding.Strict().DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key %q has a malformed x", ErrInvalidJWKS, kid)
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("%w: kid %q is not in the JWK set", ErrUnknownKey, kid)
}
