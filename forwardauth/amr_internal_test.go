package forwardauth

import (
	"slices"
	"strings"
	"testing"
)

// FuzzAMRHeader: a stored amr value amrHeader accepts gives the header the
// gateway's proxy sends for the same session (signin.AMR's split, joined
// with commas), and that header splits back into the same list; a value
// with a comma, an empty item or a character a header parser trims or
// refuses is not accepted.
func FuzzAMRHeader(f *testing.F) {
	for _, s := range []string{"", "pwd", "pwd otp", "pwd hwk user pin mfa", "pwd  otp", " pwd", "pwd,otp", "pwd\totp", "a\x7f", "pwd\u00a0otp", "pwd\u2003otp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		header, ok := amrHeader(stored)
		if !ok {
			if header != "" {
				t.Fatalf("refused %q but gave %q", stored, header)
			}
			return
		}
		fields := strings.Fields(stored)
		if header != strings.Join(fields, ",") {
			t.Fatalf("amrHeader(%q) = %q; the proxy sends %q", stored, header, strings.Join(fields, ","))
		}
		if header == "" {
			return
		}
		if back := strings.Split(header, ","); !slices.Equal(back, fields) {
			t.Fatalf("%q splits into %q, not %q", header, back, fields)
		}
		if !plainHeaderValue(header) {
			t.Fatalf("%q is not a plain header value", header)
		}
	})
}
