package dbsc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of a bound cookie, returned (wrapped) by [Binder.Check] through
// [cloakroom.Session.BindingErr].
var (
	// ErrCookieMissing: a bound session's request came without its bound
	// cookie.
	ErrCookieMissing = errors.New("dbsc: the bound cookie is missing")
	// ErrCookieExpired: the bound cookie's lifetime has passed; the
	// device refreshes it, a copy of it stays dead.
	ErrCookieExpired = errors.New("dbsc: the bound cookie has expired")
	// ErrCookieInvalid: the bound cookie is malformed or its MAC does not
	// verify for this session (forged, or copied from another session).
	ErrCookieInvalid = errors.New("dbsc: the bound cookie is not valid for this session")
	// ErrBindingRequired: Config.Require asks for a bound session here
	// and the session never registered a device key.
	ErrBindingRequired = errors.New("dbsc: this request requires a session bound to its device")
)

// MinKeySize is the shortest MAC key [New] accepts.
const MinKeySize = 32

// maxCookieValue bounds a bound cookie's value before it is parsed:
// "v1." + 20 digits + "." + 43 characters of MAC.
const maxCookieValue = 80

// cookieVersion prefixes every bound cookie value, so the format can
// change without old cookies being misread.
const cookieVersion = "v1"

// cookieMAC is the MAC of a bound cookie for the session with the given
// handle, valid until expiry (Unix seconds). The handle names the session
// across its renewals and is never a credential; the MAC key is the
// server's alone, so a stolen session cookie yields no bound cookie.
func cookieMAC(key []byte, handle string, expiry int64) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cloakroom dbsc bound cookie " + cookieVersion + "\x00"))
	m.Write([]byte(handle))
	m.Write([]byte{0})
	m.Write(strconv.AppendInt(nil, expiry, 10))
	return m.Sum(nil)
}

// mintCookie returns the value of a bound cookie for handle, valid until
// expiry.
func mintCookie(key []byte, handle string, expiry time.Time) string {
	exp := expiry.Unix()
	return cookieVersion + "." + strconv.FormatInt(exp, 10) + "." +
		base64.RawURLEncoding.EncodeToString(cookieMAC(key, handle, exp))
}

// parseCookie splits a bound cookie value into its expiry and MAC. It
// accepts only the one spelling mintCookie writes.
func parseCookie(value string) (expiry int64, mac []byte, err error) {
	if len(value) > maxCookieValue {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrCookieInvalid, len(value))
	}
	version, rest, ok := strings.Cut(value, ".")
	if !ok || version != cookieVersion {
		return 0, nil, fmt.Errorf("%w: unknown format", ErrCookieInvalid)
	}
	digits, encoded, ok := strings.Cut(rest, ".")
	if !ok || digits == "" || len(digits) > 19 || (len(digits) > 1 && digits[0] == '0') {
		return 0, nil, fmt.Errorf("%w: bad expiry", ErrCookieInvalid)
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, nil, fmt.Errorf("%w: bad expiry", ErrCookieInvalid)
		}
	}
	expiry, err = strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: bad expiry", ErrCookieInvalid)
	}
	// The decoder skips CR and LF even in strict mode: only the 43
	// characters of the alphabet make the one spelling.
	if len(encoded) != base64.RawURLEncoding.EncodedLen(sha256.Size) || strings.IndexFunc(encoded, notBase64URL) >= 0 {
		return 0, nil, fmt.Errorf("%w: bad MAC encoding", ErrCookieInvalid)
	}
	mac, err = base64.RawURLEncoding.Strict().DecodeString(encoded)
	if err != nil || len(mac) != sha256.Size {
		return 0, nil, fmt.Errorf("%w: bad MAC encoding", ErrCookieInvalid)
	}
	return expiry, mac, nil
}

// notBase64URL reports a rune outside the base64url alphabet.
func notBase64URL(r rune) bool {
	return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
}

// verifyCookie checks a bound cookie value for the session with handle at
// now: its MAC first, so a forged value is told apart from an expired one
// of this session.
func verifyCookie(key []byte, value, handle string, now time.Time) error {
	expiry, mac, err := parseCookie(value)
	if err != nil {
		return err
	}
	if !hmac.Equal(mac, cookieMAC(key, handle, expiry)) {
		return ErrCookieInvalid
	}
	if now.Unix() >= expiry {
		return fmt.Errorf("%w: %s ago", ErrCookieExpired, now.Sub(time.Unix(expiry, 0)).Round(time.Second))
	}
	return nil
}
