package dbsc

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzBoundCookie: any value parseCookie accepts is the one spelling
// mintCookie writes for its expiry and MAC; verifyCookie never panics and
// accepts only what mintCookie minted with the key for that handle.
func FuzzBoundCookie(f *testing.F) {
	key := bytes.Repeat([]byte{7}, MinKeySize)
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
			if len(mac) != 32 {
				t.Fatalf("accepted a %d-byte MAC", len(mac))
			}
			again := cookieVersion + "." + strconv.FormatInt(expiry, 10) + "." + encodeMAC(mac)
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
