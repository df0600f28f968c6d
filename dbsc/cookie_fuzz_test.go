package dbsc

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzBoundCookie: any value parseCookie accepts is the one spelling
// mintCookie writes for its expiry and MAC; verifyCookie never panics and
// accepts only what mintCookie minted with the key for that handle.
func FuzzBoundCookie(f *testing.F) {
	key := newMACKey(bytes.Repeat([]byte{7}, MinKeySize))
	now := time.Unix(1_800_000_000, 0)
	f.Add(mintCookie(key, "h1", now.Add(time.Minute)), "h1")
	f.Add(mintCookie(key, "h1", now.Add(-time.Minute)), "h1")
	f.Add(mintCookie(key, "h2", now.Add(time.Minute)), "h1")
	f.Add("v1.0.", "")
	f.Add("v1.01."+strings.Repeat("A", 43), "h")
	f.Add("v2.1.x", "h")
	f.Fuzz(func(t *testing.T, value, handle string) {
		expiry, mac, err := parseCookie(value)
		if err == nil {
			raw, derr := base64.RawURLEncoding.Strict().DecodeString(mac)
			if derr != nil || len(raw) != 32 {
				t.Fatalf("accepted MAC %q: %d bytes, %v", mac, len(raw), derr)
			}
			again := cookieVersion + "." + strconv.FormatInt(expiry, 10) + "." + encodeMAC(raw)
			if again != value {
				t.Fatalf("accepted %q, which writes as %q", value, again)
			}
		}
		err = verifyCookie(key, value, handle, now)
		minted := err == nil
		if minted && value != mintCookie(key, handle, time.Unix(expiry, 0)) {
			t.Fatalf("verified %q for %q, which mintCookie did not write", value, handle)
		}
	})
}

func encodeMAC(p []byte) string { return base64.RawURLEncoding.EncodeToString(p) }

// TestBoundCookieKnownAnswer: the MAC is HMAC-SHA256 with the key over
// the prefix, the handle, a zero byte and the expiry in decimal, as it was
// first written, so bound cookies minted before a change still verify.
func TestBoundCookieKnownAnswer(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, MinKeySize)
	key := newMACKey(raw)
	expiry := time.Unix(1_800_000_000, 0)
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("cloakroom dbsc bound cookie v1\x00h1\x001800000000"))
	want := "v1.1800000000." + encodeMAC(m.Sum(nil))
	for range 3 { // the reused states give the same answer
		if got := mintCookie(key, "h1", expiry); got != want {
			t.Fatalf("mintCookie = %q, want %q", got, want)
		}
		if err := verifyCookie(key, want, "h1", expiry.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := verifyCookie(key, want, "h2", expiry.Add(-time.Second)); !errors.Is(err, ErrCookieInvalid) {
			t.Fatalf("another handle: %v", err)
		}
	}
}
