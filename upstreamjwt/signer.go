package upstreamjwt

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Token lifetimes. Tokens are minted per request, so they only need to live
// as long as one upstream call; a stolen one is useless within a minute.
const (
	DefaultTokenTTL = 30 * time.Second
	MaxTokenTTL     = 60 * time.Second
)

// jwksCacheControl lets upstreams cache the key set for five minutes. A
// verifier that meets an unknown kid should refetch (rate-limited) rather
// than wait, because a rotated gateway signs with its new key at once.
const jwksCacheControl = "public, max-age=300"

var (
	// ErrInvalidSigner wraps every problem [NewSigner] finds.
	ErrInvalidSigner = errors.New("upstreamjwt: invalid signer configuration")
	// ErrInvalidIdentity is returned when an [Identity] cannot be put into
	// headers or a token unambiguously.
	ErrInvalidIdentity = errors.New("upstreamjwt: invalid identity")
)

// SignerConfig configures a [Signer].
type SignerConfig struct {
	// Issuer is the token's "iss", typically the gateway's public URL.
	// Required.
	Issuer string
	// Audience is the token's "aud", the name upstreams check for.
	// Required.
	Audience string
	// TTL is the time from "iat" to "exp". Default 30 s; values above 60 s
	// are refused, as are values that are not whole seconds.
	TTL time.Duration
}

// Signer mints the short-lived EdDSA (Ed25519) JWTs that [Proxy] sends
// upstream as "Authorization: Bearer", and publishes the public keys as a
// JWK set. It is safe for concurrent use.
type Signer struct {
	key      ed25519.PrivateKey
	kid      string
	header   string // base64url of the JOSE header, computed once
	issuer   string
	audience json.RawMessage // JSON string, encoded once
	ttl      int64           // seconds

	mu   sync.Mutex // serialises AddVerificationKey
	keys []publicJWK
	jwks atomic.Pointer[[]byte]
}

// publicJWK is an RFC 8037 OKP public key, with fields in output order.
type publicJWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

type jwkSet struct {
	Keys []publicJWK `json:"keys"`
}

// GenerateKey returns a new random Ed25519 private key for [NewSigner].
func GenerateKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("upstreamjwt: generating Ed25519 key: %w", err)
	}
	return key, nil
}

// NewSigner returns a Signer that signs with key. Its key ID is the RFC 7638
// JWK thumbprint of the public key.
func NewSigner(key ed25519.PrivateKey, cfg SignerConfig) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: Ed25519 private key must be %d bytes, got %d", ErrInvalidSigner, ed25519.PrivateKeySize, len(key))
	}
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("%w: Issuer is required", ErrInvalidSigner)
	}
	if cfg.Audience == "" {
		return nil, fmt.Errorf("%w: Audience is required", ErrInvalidSigner)
	}
	switch {
	case cfg.TTL == 0:
		cfg.TTL = DefaultTokenTTL
	case cfg.TTL < time.Second || cfg.TTL > MaxTokenTTL:
		return nil, fmt.Errorf("%w: TTL %v is outside 1s..%v", ErrInvalidSigner, cfg.TTL, MaxTokenTTL)
	case cfg.TTL%time.Second != 0:
		return nil, fmt.Errorf("%w: TTL %v is not a whole number of seconds", ErrInvalidSigner, cfg.TTL)
	}
	audience, err := json.Marshal(cfg.Audience)
	if err != nil {
		return nil, fmt.Errorf("upstreamjwt: encoding audience: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	current := newPublicJWK(pub)
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{"EdDSA", "JWT", current.Kid})
	if err != nil {
		return nil, fmt.Errorf("upstreamjwt: encoding JOSE header: %w", err)
	}
	s := &Signer{
		key:      key,
		kid:      current.Kid,
		header:   base64.RawURLEncoding.EncodeToString(header),
		issuer:   cfg.Issuer,
		audience: audience,
		ttl:      int64(cfg.TTL / time.Second),
		keys:     []publicJWK{current},
	}
	s.publish()
	return s, nil
}

func newPublicJWK(pub ed25519.PublicKey) publicJWK {
	x := base64.RawURLEncoding.EncodeToString(pub)
	return publicJWK{Kty: "OKP", Crv: "Ed25519", X: x, Kid: thumbprint(x), Use: "sig", Alg: "EdDSA"}
}

// thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 key: SHA-256 over
// the required members in lexicographic order, without whitespace.
func thumbprint(x string) string {
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// KeyID returns the "kid" of the signing key.
func (s *Signer) KeyID() string { return s.kid }

// AddVerificationKey publishes an extra public key in the JWK set, so tokens
// signed by a previous key keep verifying during a rotation. Adding a key
// that is already published does nothing.
func (s *Signer) AddVerificationKey(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: Ed25519 public key must be %d bytes, got %d", ErrInvalidSigner, ed25519.PublicKeySize, len(pub))
	}
	k := newPublicJWK(pub)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.keys {
		if have.Kid == k.Kid {
			return nil
		}
	}
	s.keys = append(s.keys, k)
	s.publish()
	return nil
}

// publish re-encodes the JWK set; callers hold s.mu or own s exclusively.
func (s *Signer) publish() {
	b, err := json.Marshal(jwkSet{Keys: s.keys})
	if err != nil {
		panic("upstreamjwt: encoding JWK set: " + err.Error()) // strings only; cannot fail
	}
	s.jwks.Store(&b)
}

// JWKS returns the RFC 8037 JWK set with the signing key first, then the
// keys added with AddVerificationKey. The caller may keep the slice.
func (s *Signer) JWKS() []byte {
	b := *s.jwks.Load()
	return append([]byte(nil), b...)
}

// JWKSHandler serves the JWK set to GET and HEAD requests, cacheable for
// five minutes.
func (s *Signer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b := *s.jwks.Load()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", jwksCacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b)
	})
}

// wireClaims is the JWT payload as encoded and decoded.
type wireClaims struct {
	Issuer    string          `json:"iss"`
	Audience  json.RawMessage `json:"aud"`
	Subject   string          `json:"sub"`
	Email     string          `json:"email,omitempty"`
	Groups    []string        `json:"groups,omitempty"`
	AMR       []string        `json:"amr,omitempty"`
	IssuedAt  *int64          `json:"iat"`
	NotBefore *int64          `json:"nbf"`
	ExpiresAt *int64          `json:"exp"`
	ID        string          `json:"jti"`
}

// Sign returns a compact JWS for id, valid from now for the configured TTL,
// with a random 128-bit "jti" and the configured audience. id.User becomes
// "sub" and must not be empty.
func (s *Signer) Sign(id Identity, now time.Time) (string, error) {
	return s.SignFor(id, "", now)
}

// SignFor is [Signer.Sign] with audience as "aud" ("" for the configured
// one), so each upstream gets tokens only it accepts: a token upstream A
// received does not verify at upstream B.
func (s *Signer) SignFor(id Identity, audience string, now time.Time) (string, error) {
	if id.User == "" {
		return "", fmt.Errorf("%w: empty user", ErrInvalidIdentity)
	}
	aud := s.audience
	if audience != "" {
		var err error
		if aud, err = json.Marshal(audience); err != nil {
			return "", fmt.Errorf("upstreamjwt: encoding audience: %w", err)
		}
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", fmt.Errorf("upstreamjwt: reading randomness: %w", err)
	}
	iat := now.Unix()
	exp := iat + s.ttl
	payload, err := json.Marshal(wireClaims{
		Issuer:    s.issuer,
		Audience:  aud,
		Subject:   id.User,
		Email:     id.Email,
		Groups:    id.Groups,
		AMR:       id.AMR,
		IssuedAt:  &iat,
		NotBefore: &iat,
		ExpiresAt: &exp,
		ID:        base64.RawURLEncoding.EncodeToString(nonce[:]),
	})
	if err != nil {
		return "", fmt.Errorf("upstreamjwt: encoding claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signingLen := len(s.header) + 1 + enc.EncodedLen(len(payload))
	buf := make([]byte, signingLen, signingLen+1+enc.EncodedLen(ed25519.SignatureSize))
	copy(buf, s.header)
	buf[len(s.header)] = '.'
	enc.Encode(buf[len(s.header)+1:], payload)
	sig := ed25519.Sign(s.key, buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}
