package cloakroom

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// TokenLength is the length of an encoded session token: 32 random bytes in
// base64url without padding.
const TokenLength = 43

const tokenBytes = 32

// maxCookieHeader bounds how much of the Cookie header is scanned; a larger
// header cannot carry a session this package issued in a sane way, and
// refusing it avoids scanning attacker-sized input on every request.
const maxCookieHeader = 16 << 10

// newToken returns a fresh random token and its store key.
func newToken() (string, Key) {
	var raw [tokenBytes]byte
	rand.Read(raw[:]) // never fails; see crypto/rand docs
	return base64.RawURLEncoding.EncodeToString(raw[:]), sha256.Sum256(raw[:])
}

// base64URLValue maps a byte to its 6-bit base64url value, or 0xff.
var base64URLValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// decodeToken decodes a canonical 43-character base64url token into raw
// bytes without allocating. It reports false for anything else, including
// a final character with non-zero padding bits, so each token has exactly
// one spelling.
func decodeToken(s string) (raw [tokenBytes]byte, ok bool) {
	if len(s) != TokenLength {
		return raw, false
	}
	var acc uint32
	bits, out := 0, 0
	for i := 0; i < len(s); i++ {
		v := base64URLValue[s[i]]
		if v == 0xff {
			return raw, false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			raw[out] = byte(acc >> bits)
			out++
		}
	}
	// 43 characters carry 258 bits: the last 2 must be zero.
	if acc&(1<<bits-1) != 0 {
		return raw, false
	}
	return raw, true
}

// ParseToken validates an encoded session token and returns its store key.
// It reports false for any string that is not exactly a token this package
// could have issued; no store is consulted for those.
func ParseToken(token string) (Key, bool) {
	raw, ok := decodeToken(token)
	if !ok {
		return Key{}, false
	}
	return sha256.Sum256(raw[:]), true
}

// csrfTokenFor derives the session's synchronizer token from the session
// token. It needs the secret token, which stores never hold, so a store dump
// yields no CSRF tokens either, and it changes whenever the session token
// does.
func csrfTokenFor(token string) string {
	raw, ok := decodeToken(token)
	if !ok {
		return ""
	}
	mac := hmac.New(sha256.New, raw[:])
	mac.Write([]byte("cloakroom csrf v1"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// cookieValue returns the value of the one cookie called name in the
// request's Cookie headers. It reports false when there is none, when there
// are several (a sibling domain may have planted one), or when the headers
// are oversized. It does not allocate.
func cookieValue(h http.Header, name string) (string, bool) {
	lines := h["Cookie"]
	total := 0
	value, found := "", false
	for _, line := range lines {
		total += len(line)
		if total > maxCookieHeader {
			return "", false
		}
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if found {
				return "", false
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			value, found = v, true
		}
	}
	return value, found
}
