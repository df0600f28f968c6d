package ascii

import (
	"strings"
	"testing"
	"unsafe"
)

// FuzzLower checks Lower against a byte-by-byte fold: only A to Z change,
// the length never does, and a string with nothing to fold is returned
// as it is, not copied.
func FuzzLower(f *testing.F) {
	for _, s := range []string{"", "alice", "ALICE.B-2@X", "ÄBC\x00z", "İstanbul"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Lower(s)
		want := []byte(s)
		for i, c := range want {
			if 'A' <= c && c <= 'Z' {
				want[i] = c + 'a' - 'A'
			}
		}
		if got != string(want) {
			t.Fatalf("Lower(%q) = %q, want %q", s, got, want)
		}
		if got == s && len(s) > 0 && unsafe.StringData(got) != unsafe.StringData(s) {
			t.Fatalf("Lower(%q) copied a string with nothing to fold", s)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
			t.Fatalf("Lower(%q) = %q keeps an upper-case letter", s, got)
		}
	})
}
