package conduit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// maxTokenBytes bounds the token the API will look at.
const maxTokenBytes = 4 << 10

// jwtHeader is the one header the API issues and accepts.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// claims are what a token says. ID is a JSON number. JTI is random, so
// that two tokens issued within the same second still differ.
type claims struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	JTI      string `json:"jti,omitempty"`
}

var errBadToken = errors.New("conduit: invalid or expired token")

// sign returns the HS256 JWT of c.
func sign(key []byte, c claims) string {
	var nonce [12]byte
	rand.Read(nonce[:])
	c.JTI = base64.RawURLEncoding.EncodeToString(nonce[:])
	payload, _ := json.Marshal(c)
	signed := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(key, signed))
}

func mac(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// verify checks token's HS256 signature, its header (alg must be HS256:
// "none" and every other algorithm are refused) and its expiry, and
// returns its claims.
func verify(key []byte, token string, now time.Time) (claims, error) {
	if len(token) > maxTokenBytes {
		return claims{}, errBadToken
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errBadToken
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac(key, parts[0]+"."+parts[1])) {
		return claims{}, errBadToken
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if !decodePart(parts[0], &header) || header.Alg != "HS256" {
		return claims{}, errBadToken
	}
	var c claims
	if !decodePart(parts[1], &c) || c.ID <= 0 || c.Exp == 0 || now.Unix() >= c.Exp {
		return claims{}, errBadToken
	}
	return c, nil
}

func decodePart(part string, dst any) bool {
	b, err := base64.RawURLEncoding.Strict().DecodeString(part)
	return err == nil && json.Unmarshal(b, dst) == nil
}
