package dbsc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// cookieMACPrefix begins the input of every bound cookie's MAC.
const cookieMACPrefix = "cloakroom dbsc bound cookie " + cookieVersion + "\x00"

// encodedMACLen is the length of a MAC in base64url without padding.
var encodedMACLen = base64.RawURLEncoding.EncodedLen(sha256.Size)

// macKey computes the MACs of bound cookies with one key. Its HMAC states
// are reused (the check runs on every request of a bound session), each
// by one goroutine at a time.
type macKey struct {
	states sync.Pool // of *macState
}

type macState struct {
	h     hash.Hash
	input []byte
	sum   []byte
}

func newMACKey(key []byte) *macKey {
	key = slices.Clone(key)
	k := &macKey{}
	k.states.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	return k
}

// encoded writes to dst the base64url MAC of a bound cookie for the
// session with the given handle, valid until expiry (Unix seconds). The
// handle names the session across its renewals and is never a
// credential; the MAC key is the server's alone, so a stolen session
// cookie yields no bound cookie.
func (k *macKey) encoded(dst *[43]byte, handle string, expiry int64) {
	st := k.states.Get().(*macState)
	st.h.Reset()
	st.input = append(append(append(st.input[:0], cookieMACPrefix...), handle...), 0)
	st.input = strconv.AppendInt(st.input, expiry, 10)
	st.h.Write(st.input)
	st.sum = st.h.Sum(st.sum[:0])
	base64.RawURLEncoding.Encode(dst[:], st.sum)
	k.states.Put(st)
}

// mintCookie returns the value of a bound cookie for handle, valid until
// expiry.
func mintCookie(key *macKey, handle string, expiry time.Time) string {
	exp := expiry.Unix()
	var mac [43]byte
	key.encoded(&mac, handle, exp)
	return cookieVersion + "." + strconv.FormatInt(exp, 10) + "." + string(mac[:])
}

// parseCookie splits a bound cookie value into its expiry and its MAC,
// still encoded. It accepts only the one spelling mintCookie writes.
func parseCookie(value string) (expiry int64, mac string, err error) {
	if len(value) > maxCookieValue {
		return 0, "", fmt.Errorf("%w: %d bytes", ErrCookieInvalid, len(value))
	}
	version, rest, ok := strings.Cut(value, ".")
	if !ok || version != cookieVersion {
		return 0, "", fmt.Errorf("%w: unknown format", ErrCookieInvalid)
	}
	digits, encoded, ok := strings.Cut(rest, ".")
	if !ok || digits == "" || len(digits) > 19 || (len(digits) > 1 && digits[0] == '0') {
		return 0, "", fmt.Errorf("%w: bad expiry", ErrCookieInvalid)
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return 0, "", fmt.Errorf("%w: bad expiry", ErrCookieInvalid)
		}
	}
	expiry, err = strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w: bad expiry", ErrCookieInvalid)
	}
	// The one spelling: 43 characters of the alphabet, the last one's two
	// padding bits zero (strict decoding's rule; the decoder would also
	// skip CR and LF).
	if len(encoded) != encodedMACLen || strings.IndexFunc(encoded, notBase64URL) >= 0 ||
		strings.IndexByte(base64URLAlphabet, encoded[len(encoded)-1])&3 != 0 {
		return 0, "", fmt.Errorf("%w: bad MAC encoding", ErrCookieInvalid)
	}
	return expiry, encoded, nil
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// notBase64URL reports a rune outside the base64url alphabet.
func notBase64URL(r rune) bool {
	return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
}

// verifyCookie checks a bound cookie value for the session with handle at
// now: its MAC first, so a forged value is told apart from an expired one
// of this session.
func verifyCookie(key *macKey, value, handle string, now time.Time) error {
	expiry, mac, err := parseCookie(value)
	if err != nil {
		return err
	}
	// Compared encoded, in constant time: both are the one spelling of
	// their bytes, so the encodings are equal exactly when the MACs are.
	var want [43]byte
	key.encoded(&want, handle, expiry)
	var diff byte
	for i := range want {
		diff |= want[i] ^ mac[i]
	}
	if diff != 0 {
		return ErrCookieInvalid
	}
	if now.Unix() >= expiry {
		return fmt.Errorf("%w: %s ago", ErrCookieExpired, now.Sub(time.Unix(expiry, 0)).Round(time.Second))
	}
	return nil
}
