// Package amrheader owns the rule for X-Forwarded-Amr, the header in
// which the gateway's proxy and forward auth tell an upstream how the
// user signed in (RFC 8176 amr values, comma-separated): a value goes
// into it only if the upstream reads the same list back. A value with a
// comma would read as two (a provider's "pwd,otp" as a second factor),
// and a space, control, non-ASCII or empty one may be trimmed, split or
// refused by a header parser.
package amrheader

import "strings"

// valueByte reports whether c may appear in an amr value of the header:
// printable ASCII, not a space, not a comma.
func valueByte(c byte) bool { return c > ' ' && c <= '~' && c != ',' }

// Value reports whether v can be one value of the header.
func Value(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !valueByte(v[i]) {
			return false
		}
	}
	return true
}

// Join returns amr as the header carries it, and whether every value
// reads back unambiguously (see [Value]); "" and false when one does not.
func Join(amr []string) (string, bool) {
	for _, v := range amr {
		if !Value(v) {
			return "", false
		}
	}
	return strings.Join(amr, ","), true
}

// FromStored returns a session's stored amr (signin.ValueAMR: the values
// with one space between each) as the header carries it, and whether it
// reads back unambiguously: what [Join] accepts, split by single spaces.
// Replacing the spaces costs one allocation where splitting and joining
// would cost two.
func FromStored(stored string) (string, bool) {
	if stored == "" {
		return "", true
	}
	if stored[0] == ' ' || stored[len(stored)-1] == ' ' || strings.Contains(stored, "  ") {
		return "", false
	}
	for i := 0; i < len(stored); i++ {
		if c := stored[i]; c != ' ' && !valueByte(c) {
			return "", false
		}
	}
	return strings.ReplaceAll(stored, " ", ","), true
}
