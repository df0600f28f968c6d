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

// amrHeader returns the session's amr value (signin.ValueAMR: RFC 8176
// values, one space between each) as X-Forwarded-Amr carries it,
// comma-separated as the gateway's proxy joins signin.AMR, and whether it
// reads unambiguously there: printable ASCII as signin admits it (no
// Unicode space that signin.AMR would split on), no value with a comma
// (a provider's), no empty value, nothing a header parser would trim.
// Replacing the spaces costs one allocation where splitting and joining
// would cost two.
func amrHeader(stored string) (string, bool) {
	if stored != strings.TrimSpace(stored) || strings.Contains(stored, "  ") {
		return "", false
	}
	for i := 0; i < len(stored); i++ {
		if c := stored[i]; c < ' ' || c > '~' || c == ',' {
			return "", false
		}
	}
	return strings.ReplaceAll(stored, " ", ","), true
}
