package cloakroom

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// TokenLength is the length of an encoded session token: 32 random bytes in
// base64url without padding.
const TokenLength = 43

const tokenBytes = 32

// MaxCookieHeader bounds how much of the Cookie header is scanned: a
// request whose Cookie headers add up to more bytes is treated as carrying
// no session cookie (fail closed). A larger header cannot carry a session
// this package issued in a sane way, and refusing it avoids scanning
// attacker-sized input on every request. It is exported so that a server
// can tell the user why (the gateway answers 431).
const MaxCookieHeader = 16 << 10

// Why [CookieValue] found no value.
var (
	ErrNoCookie         = errors.New("cloakroom: no such cookie")
	ErrCookieRepeated   = errors.New("cloakroom: the cookie is sent more than once")
	ErrCookieHeaderSize = errors.New("cloakroom: the Cookie headers are too large")
)

// CookieValue returns the value of the one cookie called name in the
// Cookie headers of h, its quotes removed. These are the rules the session
// middleware reads its cookie by, exported so that a server reads its own
// security cookies the same way. A pair is the cookie when its name, the
// text before its first "=" (all of it when there is none) with the
// whitespace around it trimmed, equals name: net/http and most servers
// read names so, and no spelling another reader takes for the cookie may
// escape the count of copies.
//
// It refuses a cookie sent more than once ([ErrCookieRepeated]): a sibling
// domain or a longer path may have planted one beside it, and the
// browser's order is no authority, so a caller must treat it as no cookie
// (or an invalid one), never take either value. It refuses headers over
// [MaxCookieHeader] in total ([ErrCookieHeaderSize]). It does not
// allocate: it runs on every request.
func CookieValue(h http.Header, name string) (string, error) {
	total := 0
	value, found := "", false
	for _, line := range h["Cookie"] {
		total += len(line)
		if total > MaxCookieHeader {
			return "", ErrCookieHeaderSize
		}
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, _ := strings.Cut(part, "=")
			if strings.TrimSpace(k) != name {
				continue
			}
			if found {
				return "", ErrCookieRepeated
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			value, found = v, true
		}
	}
	if !found {
		return "", ErrNoCookie
	}
	return value, nil
}

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
// one spelling. It works four characters at a time: it runs on every
// request that carries a cookie.
func decodeToken(s string) (raw [tokenBytes]byte, ok bool) {
	if len(s) != TokenLength {
		return raw, false
	}
	var bad byte
	out := 0
	for i := 0; i < 40; i += 4 {
		a, b, c, d := base64URLValue[s[i]], base64URLValue[s[i+1]], base64URLValue[s[i+2]], base64URLValue[s[i+3]]
		bad |= a | b | c | d
		n := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		raw[out], raw[out+1], raw[out+2] = byte(n>>16), byte(n>>8), byte(n)
		out += 3
	}
	// The last 3 characters carry 18 bits: 2 bytes and 2 padding bits,
	// which must be zero.
	a, b, c := base64URLValue[s[40]], base64URLValue[s[41]], base64URLValue[s[42]]
	bad |= a | b | c
	n := uint32(a)<<12 | uint32(b)<<6 | uint32(c)
	raw[30], raw[31] = byte(n>>10), byte(n>>2)
	// Every valid value is below 64; 0xff marks an invalid character.
	if bad&0xc0 != 0 || n&3 != 0 {
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
