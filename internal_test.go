package cloakroom

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestTokenFormat(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok, key := newToken()
		if len(tok) != TokenLength || strings.ContainsAny(tok, "+/=") {
			t.Fatalf("token %q is not 43 base64url characters", tok)
		}
		got, ok := ParseToken(tok)
		if !ok || got != key {
			t.Fatalf("ParseToken(newToken()) = %v, %v", got, ok)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestCookieValue(t *testing.T) {
	const n = "sid"
	tests := []struct {
		header []string
		want   string
		err    error
	}{
		{[]string{"sid=abc"}, "abc", nil},
		{[]string{"a=1; sid=abc; b=2"}, "abc", nil},
		{[]string{"a=1", "sid=abc"}, "abc", nil},
		{[]string{`sid="abc"`}, "abc", nil},
		{[]string{"sid="}, "", nil},
		{[]string{" \tsid=abc ; b=2"}, "abc", nil}, // the pair is trimmed
		{[]string{"sid =abc"}, "abc", nil},         // and the name: net/http reads it so
		{[]string{"sid"}, "", nil},                 // as net/http does, an empty value
		{[]string{"sid=abc; sid =def"}, "", ErrCookieRepeated},
		{[]string{"sid=abc; sid"}, "", ErrCookieRepeated},
		{[]string{"sid=abc; sid=def"}, "", ErrCookieRepeated},
		{[]string{"sid=abc", "sid=abc"}, "", ErrCookieRepeated},
		{[]string{"sid=abc; x=" + strings.Repeat("y", MaxCookieHeader)}, "", ErrCookieHeaderSize},
		{[]string{"sid=abc", "x=" + strings.Repeat("y", MaxCookieHeader-len("sid=abcx="))}, "abc", nil}, // exactly the bound
		{[]string{"sid=abc", "x=" + strings.Repeat("y", MaxCookieHeader-len("sid=abcx=")+1)}, "", ErrCookieHeaderSize},
		{[]string{"xsid=abc; sidx=def"}, "", ErrNoCookie},
		{[]string{""}, "", ErrNoCookie},
		{nil, "", ErrNoCookie},
	}
	for _, tt := range tests {
		h := http.Header{"Cookie": tt.header}
		got, err := CookieValue(h, n)
		if got != tt.want || err != tt.err {
			t.Errorf("CookieValue(%.40q) = %q, %v; want %q, %v", tt.header, got, err, tt.want, tt.err)
		}
	}
}

func TestValuesRoundTrip(t *testing.T) {
	m := map[string]string{"": "empty key", "a": "", "roles": `["admin","user"]`, "big": strings.Repeat("x", 100000)}
	data := encodeValues(m)
	got, err := decodeValues(data)
	if err != nil || len(got) != len(m) {
		t.Fatalf("decode: %v, %d values", err, len(got))
	}
	for k, v := range m {
		if got[k] != v {
			t.Errorf("%q = %q, want %q", k, got[k], v)
		}
		if lv, ok, err := lookupValue(data, k); !ok || err != nil || string(lv) != v {
			t.Errorf("lookup %q = %q, %v, %v", k, lv, ok, err)
		}
	}
	if !bytes.Equal(encodeValues(got), data) {
		t.Error("encoding is not deterministic")
	}
	if _, err := decodeValues([]byte{5, 1}); err == nil {
		t.Error("truncated values accepted")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	rec := Record{Key: Key{1, 2}, Handle: "h", UserID: "alice", Generation: 7, Version: 9,
		CreatedAt: time.Unix(100, 5), LastSeen: time.Unix(200, 6), IdleTimeout: time.Hour,
		AbsoluteDeadline: time.Unix(300, 7), Persistent: true, IP: "::1", UserAgent: "ua", Data: []byte{0, 1}}
	b, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.Key != rec.Key || got.UserID != rec.UserID || got.Version != 9 || !got.LastSeen.Equal(rec.LastSeen) ||
		!got.Persistent || got.IP != "::1" || !bytes.Equal(got.Data, rec.Data) || got.IdleTimeout != time.Hour {
		t.Fatalf("round trip: %+v", got)
	}
	for i := 0; i < len(b); i++ {
		if err := new(Record).UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("truncated record (%d of %d bytes) accepted", i, len(b))
		}
	}
}

func TestCSRFTokenDerivation(t *testing.T) {
	a, _ := newToken()
	b, _ := newToken()
	if csrfTokenFor(a) == csrfTokenFor(b) || csrfTokenFor(a) != csrfTokenFor(a) {
		t.Fatal("CSRF tokens must be stable per session and differ between sessions")
	}
	if csrfTokenFor("not a token") != "" {
		t.Fatal("CSRF token for an invalid session token")
	}
}

func TestDeviceLabel(t *testing.T) {
	tests := map[string]string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36":                     "Chrome on Linux",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/604.1": "Safari on iPhone",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0":                                          "Firefox on Windows",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36 Edg/156.0":     "Edge on Windows",
		"curl/8.5.0": "curl on unknown system",
		"":           "Unknown browser on unknown system",
	}
	for ua, want := range tests {
		if got := DeviceLabel(ua); got != want {
			t.Errorf("DeviceLabel(%q) = %q, want %q", ua, got, want)
		}
	}
}

// TestStandardLibraryOnly enforces that the core package imports nothing
// outside the standard library, so adopting it adds no dependencies.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg != "github.com/cloakroom/cloakroom" {
			t.Errorf("the core package depends on %s; it must use the standard library only", pkg)
		}
	}
}

// TestEveryPackageHasADoc keeps `go doc` useful: each package of the
// module says what it is for.
func TestEveryPackageHasADoc(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}|{{len .GoFiles}}|{{.Doc}}", "github.com/cloakroom/cloakroom/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, rest, _ := strings.Cut(line, "|")
		files, doc, _ := strings.Cut(rest, "|")
		if files != "0" && strings.TrimSpace(doc) == "" {
			t.Errorf("package %s has no package doc", path)
		}
	}
}
