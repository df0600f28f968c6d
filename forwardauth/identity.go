package forwardauth

import (
	"strings"
)

// plainHeaderValue reports whether s reads the same in a header as it is:
// no control characters, no surrounding spaces a parser would trim. The
// empty string is plain (an unknown value is sent empty).
func plainHeaderValue(s string) bool {
	if s != strings.TrimSpace(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// plainGroups reports whether the comma-joined groups (or amr values)
// split back into the same list.
func plainGroups(groups []string) bool {
	for _, g := range groups {
		if g == "" || strings.Contains(g, ",") || !plainHeaderValue(g) {
			return false
		}
	}
	return true
}
