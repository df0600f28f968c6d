package dbsc

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The algorithms a proof may be signed with. The specification also names
// "none", which proves nothing and is refused.
const (
	AlgES256 = "ES256"
	AlgRS256 = "RS256"
)

// MaxProofSize bounds a proof JWT. The largest honest one, an RS256
// registration with an 8192-bit key in its header, is about 3.6 KiB.
const MaxProofSize = 8 << 10

// proofType is the JOSE typ a DBSC proof carries.
const proofType = "dbsc+jwt"

var (
	// ErrMalformed: not a JWT, bad base64url or JSON, a repeated JSON key,
	// a wrong typ, a crit header, a missing jti, or oversized.
	ErrMalformed = errors.New("malformed device-binding proof")
	// ErrAlgorithm: an alg other than ES256 and RS256 (none, HS256, PS256,
	// ES384, ...).
	ErrAlgorithm = errors.New("device-binding proof algorithm not accepted")
	// ErrKey: a missing or unacceptable jwk (wrong type for the alg, curve
	// other than P-256, a point off the curve, RSA outside 2048..8192 bits
	// or an exponent other than 65537, private members), or a refresh proof
	// carrying a key other than the stored one.
	ErrKey = errors.New("device-binding key not accepted")
	// ErrSignature: the signature does not verify with the key.
	ErrSignature = errors.New("device-binding proof signature does not verify")
)

// Proof is a verified Secure-Session-Response JWT. Its signature is good;
// whether its Challenge is the one issued, unused and fresh, and whether
// its Authorization and IssuedAt are acceptable, is the caller's to check.
type Proof struct {
	Algorithm     string          // AlgES256 or AlgRS256
	Challenge     string          // the jti claim
	Authorization string          // the authorization claim, "" when absent
	JWK           json.RawMessage // registration: the key it was signed with, canonical (see CanonicalJWK); refresh: the stored key, canonical
	IssuedAt      time.Time       // the iat claim; zero when absent
}

// VerifyRegistration verifies a registration proof, signed by the key it
// carries: a jwk in the JWT header, as the specification requires, or in
// the payload, as its example shows (both may be present only if they are
// the same key). It does not check the challenge: see Proof.
func VerifyRegistration(token string) (*Proof, error) {
	jwt, err := parseJWT(token)
	if err != nil {
		return nil, err
	}
	var key *publicKey
	for _, raw := range [][]byte{jwt.headerJWK, jwt.payloadJWK} {
		if raw == nil {
			continue
		}
		k, err := parseJWK(raw)
		if err != nil {
			return nil, err
		}
		if key != nil && !bytes.Equal(key.canonical, k.canonical) {
			return nil, fmt.Errorf("%w: the header and the payload carry different keys", ErrKey)
		}
		key = k
	}
	if key == nil {
		return nil, fmt.Errorf("%w: a registration proof carries no jwk", ErrKey)
	}
	return jwt.verifiedWith(key)
}

// VerifyRefresh verifies a refresh proof against the key stored at
// registration (a JWK, as Proof.JWK holds it). A proof carrying another
// jwk is refused with ErrKey; one repeating the stored key is accepted,
// though the specification says a refresh proof carries none.
func VerifyRefresh(token string, storedJWK []byte) (*Proof, error) {
	key, err := parseJWK(bytes.TrimSpace(storedJWK))
	if err != nil {
		return nil, fmt.Errorf("stored key: %w", err)
	}
	jwt, err := parseJWT(token)
	if err != nil {
		return nil, err
	}
	for _, raw := range [][]byte{jwt.headerJWK, jwt.payloadJWK} {
		if raw == nil {
			continue
		}
		carried, err := parseJWK(raw)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(carried.canonical, key.canonical) {
			return nil, fmt.Errorf("%w: the refresh proof carries a key other than the registered one", ErrKey)
		}
	}
	return jwt.verifiedWith(key)
}

// parsedJWT is a proof taken apart, its signature not yet checked.
type parsedJWT struct {
	algorithm               string
	signingInput, signature []byte
	headerJWK, payloadJWK   []byte // nil when absent
	challenge               string
	authorization           string
	issuedAt                time.Time
}

func (j *parsedJWT) verifiedWith(key *publicKey) (*Proof, error) {
	if key.algorithm != j.algorithm {
		return nil, fmt.Errorf("%w: an %s key cannot sign an %s proof", ErrKey, key.algorithm, j.algorithm)
	}
	if !key.verify(j.signingInput, j.signature) {
		return nil, ErrSignature
	}
	return &Proof{
		Algorithm:     j.algorithm,
		Challenge:     j.challenge,
		Authorization: j.authorization,
		JWK:           json.RawMessage(bytes.Clone(key.canonical)),
		IssuedAt:      j.issuedAt,
	}, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parseJWT takes a compact JWS apart and reads the header and payload
// members a proof uses.
func parseJWT(token string) (*parsedJWT, error) {
	if len(token) > MaxProofSize {
		return nil, malformed("longer than %d bytes", MaxProofSize)
	}
	if strings.Count(token, ".") != 2 {
		return nil, malformed("not a compact JWT of three parts")
	}
	headerPart, rest, _ := strings.Cut(token, ".")
	payloadPart, signaturePart, _ := strings.Cut(rest, ".")
	headerJSON, err := decodeSegment(headerPart)
	if err != nil {
		return nil, malformed("header: %v", err)
	}
	payloadJSON, err := decodeSegment(payloadPart)
	if err != nil {
		return nil, malformed("payload: %v", err)
	}
	signature, err := decodeSegment(signaturePart)
	if err != nil {
		return nil, malformed("signature: %v", err)
	}
	header, err := decodeObject(headerJSON)
	if err != nil {
		return nil, malformed("header: %v", err)
	}
	typ, err := stringMember(header, "typ")
	if err != nil {
		return nil, malformed("header: %v", err)
	}
	if typ != proofType {
		return nil, malformed("typ %q (want %q)", typ, proofType)
	}
	if _, ok := header["crit"]; ok {
		return nil, malformed("a crit header names extensions this verifier does not implement")
	}
	alg, err := stringMember(header, "alg")
	if err != nil {
		return nil, malformed("header: %v", err)
	}
	if alg != AlgES256 && alg != AlgRS256 {
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
	}
	payload, err := decodeObject(payloadJSON)
	if err != nil {
		return nil, malformed("payload: %v", err)
	}
	jti, err := stringMember(payload, "jti")
	if err != nil || jti == "" {
		return nil, malformed("payload: no jti (the challenge)")
	}
	j := &parsedJWT{
		algorithm:    alg,
		signingInput: []byte(token[:len(headerPart)+1+len(payloadPart)]),
		signature:    signature,
		challenge:    jti,
	}
	if _, ok := payload["authorization"]; ok {
		if j.authorization, err = stringMember(payload, "authorization"); err != nil {
			return nil, malformed("payload: %v", err)
		}
	}
	if raw, ok := payload["iat"]; ok {
		if j.issuedAt, err = parseIssuedAt(raw); err != nil {
			return nil, err
		}
	}
	if j.headerJWK, err = objectMember(header, "jwk"); err != nil {
		return nil, err
	}
	if j.payloadJWK, err = objectMember(payload, "jwk"); err != nil {
		return nil, err
	}
	return j, nil
}

// maxIssuedAt is the year 10000: an iat beyond it is no time.
const maxIssuedAt = 253402300800

// parseIssuedAt reads iat as a JSON integer (RFC 7519) or a string of
// decimal digits, as the specification's example sends it.
func parseIssuedAt(raw json.RawMessage) (time.Time, error) {
	text := string(raw)
	if len(text) >= 2 && text[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return time.Time{}, malformed("iat: %v", err)
		}
	}
	if text == "" || len(text) > 12 || strings.TrimLeft(text, "0123456789") != "" {
		return time.Time{}, malformed("iat is not a whole number of seconds")
	}
	seconds, err := strconv.ParseInt(text, 10, 64)
	if err != nil || seconds > maxIssuedAt {
		return time.Time{}, malformed("iat out of range")
	}
	return time.Unix(seconds, 0).UTC(), nil
}

// objectMember returns the raw JSON object of member name, nil when the
// member is absent, and ErrKey when it is not an object (a jwk).
func objectMember(members map[string]json.RawMessage, name string) ([]byte, error) {
	raw, ok := members[name]
	if !ok {
		return nil, nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: %s is not a JSON object", ErrKey, name)
	}
	return raw, nil
}

// decodeSegment decodes base64url without padding in its one canonical
// form: no padding, no whitespace or other bytes outside the alphabet
// (which the decoder would skip), no stray bits in the last character.
func decodeSegment(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, errors.New("not base64url without padding")
		}
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not canonical base64url")
	}
	return b, nil
}

// decodeObject decodes one JSON object into its members, refusing a
// repeated key (readers keeping the first and the last value would see
// different proofs) and invalid UTF-8 (which encoding/json would replace).
func decodeObject(doc []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(doc) {
		return nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	members := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not valid JSON")
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, errors.New("not valid JSON")
		}
		if _, seen := members[key]; seen {
			return nil, fmt.Errorf("member %q repeated", key)
		}
		members[key] = value
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return members, nil
}

// stringMember returns member name, which must be a JSON string.
func stringMember(members map[string]json.RawMessage, name string) (string, error) {
	raw, ok := members[name]
	if !ok {
		return "", fmt.Errorf("no %q", name)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%q is not a string", name)
	}
	return s, nil
}

func sha256Sum(b []byte) []byte {
	sum := sha256.Sum256(b)
	return sum[:]
}
