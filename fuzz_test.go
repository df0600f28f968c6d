package cloakroom

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
)

func FuzzParseToken(f *testing.F) {
	tok, _ := newToken()
	f.Add(tok)
	f.Add(tok[:42] + "B")
	f.Add("")
	f.Add("====")
	f.Fuzz(func(t *testing.T, s string) {
		key, ok := ParseToken(s)
		raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
		// The standard decoder skips CR and LF; a cookie value never
		// legitimately holds them, so ParseToken must refuse them.
		stdOK := err == nil && len(raw) == tokenBytes && !strings.ContainsAny(s, "\r\n")
		if ok != stdOK {
			t.Fatalf("ParseToken(%q) ok=%v, strict base64url of 32 bytes ok=%v", s, ok, stdOK)
		}
		if ok && base64.RawURLEncoding.EncodeToString(raw) != s {
			t.Fatalf("accepted a non-canonical spelling %q", s)
		}
		if ok && key == (Key{}) {
			t.Fatal("zero key")
		}
	})
}

func FuzzCookieValue(f *testing.F) {
	f.Add("a=b; " + DefaultCookieName + "=xyz")
	f.Add(DefaultCookieName + "=\"q\"; " + DefaultCookieName + "=r")
	f.Add(";;;=;")
	f.Fuzz(func(t *testing.T, header string) {
		h := http.Header{"Cookie": {header}}
		v, err := CookieValue(h, DefaultCookieName)
		if err != nil && v != "" {
			t.Fatalf("not found but value %q", v)
		}
		if err == nil && len(v) > len(header) {
			t.Fatalf("value longer than the header")
		}
		if err != nil {
			return
		}
		// The value is one cookie's, taken verbatim from the header: it
		// holds no separator, and exactly one pair of the header names the
		// cookie, as net/http reads names, with that value.
		if strings.Contains(v, ";") {
			t.Fatalf("value %q holds a separator", v)
		}
		named := 0
		for part := range strings.SplitSeq(header, ";") {
			k, pv, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.TrimSpace(k) != DefaultCookieName {
				continue
			}
			named++
			if pv != v && pv != "\""+v+"\"" {
				t.Fatalf("value %q is not %s's in %q", v, DefaultCookieName, header)
			}
		}
		if named != 1 {
			t.Fatalf("value %q read from %q, which names %s %d times", v, header, DefaultCookieName, named)
		}
		if c, err := (&http.Request{Header: h}).Cookie(DefaultCookieName); err == nil && c.Value != v {
			t.Fatalf("net/http reads %q from %q, CookieValue %q", c.Value, header, v)
		}
	})
}

func FuzzValues(f *testing.F) {
	f.Add(encodeValues(map[string]string{"a": "1", "roles": `["admin"]`}))
	f.Add([]byte{1, 1, 'a', 200})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeValues(data)
		if err != nil {
			return
		}
		for k, v := range m {
			// The in-place lookup and the full decode agree on every value.
			got, ok, err := lookupValue(data, k)
			if err != nil || !ok || string(got) != v {
				t.Fatalf("lookup %q = %q, ok=%v err=%v; decoded %q", k, got, ok, err, v)
			}
		}
		// Only canonical encodings decode: what we accept is what we write.
		if !bytes.Equal(encodeValues(m), data) {
			t.Fatalf("accepted a non-canonical encoding %x of %v", data, m)
		}
		again, err := decodeValues(encodeValues(m))
		if err != nil || len(again) != len(m) {
			t.Fatalf("re-encoding lost values: %v", err)
		}
		for k, v := range m {
			if again[k] != v {
				t.Fatalf("round trip of %q: %q != %q", k, again[k], v)
			}
		}
	})
}

func FuzzRecord(f *testing.F) {
	rec := Record{Handle: "h", UserID: "u", Version: 3, CreatedAt: time.Unix(1, 0), LastSeen: time.Unix(2, 0),
		IdleTimeout: time.Minute, AbsoluteDeadline: time.Unix(3, 0), IP: "::1", UserAgent: "ua", Data: []byte("d")}
	b, _ := rec.MarshalBinary()
	f.Add(b)
	f.Add([]byte{recordFormat})
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Record
		if err := r.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := r.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("decode/encode is not the identity")
		}
	})
}

func FuzzDeviceLabel(f *testing.F) {
	f.Add("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36")
	f.Fuzz(func(t *testing.T, ua string) {
		if l := DeviceLabel(ua); len(l) > 64 {
			t.Fatalf("label %q too long", l)
		}
	})
}
