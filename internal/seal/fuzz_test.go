package seal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cloakroom/cloakroom/internal/seal"
)

// FuzzOpen feeds arbitrary strings to the parser (never panics, every
// error wraps ErrCannotOpen) and checks that a sealed value changed in any
// way, or opened with other associated data, never opens.
func FuzzOpen(f *testing.F) {
	k := parse(f, keyLine(f, "k2"), keyLine(f, "k1"))
	f.Add("v1.k1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte("token"), []byte("aad"), uint(3), byte('x'))
	f.Add(k.Seal([]byte("token"), []byte("aad")), []byte(""), []byte(""), uint(0), byte(0))
	f.Add("v1.k2.", []byte("eyJhbGciOi.x.y"), []byte("vault:s"), uint(40), byte('A'))
	f.Fuzz(func(t *testing.T, s string, plaintext, aad []byte, pos uint, b byte) {
		if got, err := k.Open(s, aad); err == nil {
			// Only a value this keyring sealed can open; random input
			// opening would mean forgery.
			t.Fatalf("arbitrary input %q opened to %q", s, got)
		} else if !errors.Is(err, seal.ErrCannotOpen) {
			t.Fatalf("error %v does not wrap ErrCannotOpen", err)
		}

		sealed := k.Seal(plaintext, aad)
		got, err := k.Open(sealed, aad)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("round trip: %q %v", got, err)
		}
		mutated := []byte(sealed)
		i := int(pos % uint(len(mutated)))
		mutated[i] = b
		if string(mutated) != sealed {
			if got, err := k.Open(string(mutated), aad); err == nil {
				t.Fatalf("tampered %q opened to %q", mutated, got)
			}
		}
		if _, err := k.Open(sealed, append(append([]byte{}, aad...), b)); err == nil {
			t.Fatal("opened with different associated data")
		}
	})
}
