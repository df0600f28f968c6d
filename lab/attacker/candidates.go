package attacker

import (
	"cmp"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
)

// tokenLike matches what a session token, a CSRF token or a JWT looks like:
// a run of 20 or more base64url characters, dots (JWT) and padding. Random
// strings that long mix character classes; see randomLooking.
var tokenLike = regexp.MustCompile(`[A-Za-z0-9_\-.=~]{20,}`)

// minCandidateLength is the shortest string Candidates returns.
const minCandidateLength = 20

// jwtLike matches a compact JWS: three base64url parts, the first two
// starting like a JSON object ("eyJ").
var jwtLike = regexp.MustCompile(`^eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$`)

// maxNesting bounds how deep Candidates looks into JSON held in strings.
const maxNesting = 4

// Candidates returns the token-like strings in a report, as an attacker
// would pick them out: every JSON string (and JSON inside strings, such as
// a response body) is searched for runs of 20 or more token characters
// that mix letter cases or digits; JWTs come first, then longer strings. At
// most 12 are returned. A body that is not JSON is searched as text.
func Candidates(body []byte) []string {
	found := make(map[string]bool)
	var v any
	if json.Unmarshal(body, &v) == nil {
		walk(v, found, 0)
	} else {
		scan(string(body), found, 0)
	}
	out := make([]string, 0, len(found))
	for s := range found {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b string) int {
		ja, jb := jwtLike.MatchString(a), jwtLike.MatchString(b)
		if ja != jb {
			if ja {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(len(b), len(a)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if len(out) > maxCandidates {
		out = out[:maxCandidates]
	}
	return out
}

func walk(v any, found map[string]bool, depth int) {
	switch v := v.(type) {
	case string:
		scan(v, found, depth)
	case []any:
		for _, e := range v {
			walk(e, found, depth)
		}
	case map[string]any:
		for _, e := range v {
			walk(e, found, depth)
		}
	}
}

func scan(s string, found map[string]bool, depth int) {
	if depth < maxNesting {
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
			var inner any
			if json.Unmarshal([]byte(t), &inner) == nil {
				walk(inner, found, depth+1)
				return
			}
		}
	}
	for _, m := range tokenLike.FindAllString(s, -1) {
		if m = strings.Trim(m, ".="); len(m) >= minCandidateLength && randomLooking(m) {
			found[m] = true
		}
	}
}

// randomLooking tells a random token from a long identifier such as
// "guestbook.token_expires_at": it mixes at least two of lower case, upper
// case and digits.
func randomLooking(s string) bool {
	var lower, upper, digit int
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z':
			lower = 1
		case 'A' <= c && c <= 'Z':
			upper = 1
		case '0' <= c && c <= '9':
			digit = 1
		}
	}
	return lower+upper+digit >= 2
}
