package amrheader

import (
	"slices"
	"strings"
	"testing"
)

// FuzzAMRHeader: a stored amr value FromStored accepts gives the header
// the gateway's proxy sends for the same session (signin.AMR's split,
// joined by Join), and that header splits back into the same list; a
// value with a comma, an empty item or a character a header parser trims
// or refuses is not accepted, by either.
func FuzzAMRHeader(f *testing.F) {
	for _, s := range []string{"", "pwd", "pwd otp", "pwd hwk user pin mfa", "pwd  otp", " pwd", "pwd,otp", "pwd\totp", "a\x7f", "pwd\u00a0otp", "pwd\u2003otp", "otp\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		header, ok := FromStored(stored)
		fields := strings.Fields(stored)
		joined, joinOK := Join(fields)
		if !ok {
			if header != "" {
				t.Fatalf("refused %q but gave %q", stored, header)
			}
			if joinOK && strings.Join(fields, " ") == stored {
				t.Fatalf("FromStored refused %q, Join accepts its values %q", stored, fields)
			}
			return
		}
		if !joinOK || header != joined {
			t.Fatalf("FromStored(%q) = %q; the proxy sends %q (%v)", stored, header, joined, joinOK)
		}
		if header == "" {
			return
		}
		if back := strings.Split(header, ","); !slices.Equal(back, fields) {
			t.Fatalf("%q splits into %q, not %q", header, back, fields)
		}
		if header != strings.TrimSpace(header) || strings.ContainsFunc(header, func(r rune) bool { return r < ' ' || r > '~' }) {
			t.Fatalf("%q is not a plain header value", header)
		}
	})
}

func TestValue(t *testing.T) {
	for v, want := range map[string]bool{
		"pwd": true, "otp": true, "x-y_z.1": true,
		"": false, "pwd,otp": false, "pwd otp": false, "otp\u00e9": false, "a\x7f": false, "a\tb": false, "\u00a0": false,
	} {
		if got := Value(v); got != want {
			t.Errorf("Value(%q) = %v, want %v", v, got, want)
		}
	}
}
