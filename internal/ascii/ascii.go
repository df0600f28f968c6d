// Package ascii folds case the way protocols and names compared without
// regard to ASCII case want it: only A to Z change, whatever the locale,
// unlike strings.ToLower, which also maps non-ASCII letters.
package ascii

// Lower returns s with A to Z mapped to a to z. It returns s itself, with
// no copy, when s has no upper-case ASCII letter.
func Lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
