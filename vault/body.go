package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/internal/jsonscan"
)

// JSONPath names a value in a JSON document: object keys, and decimal
// indexes for arrays, separated by dots ("user.token", "data.0.jwt").
type JSONPath []string

// maxPathSegments bounds a JSONPath.
const maxPathSegments = 16

// ParseJSONPath reads a dotted path such as "user.token".
func ParseJSONPath(s string) (JSONPath, error) {
	if s == "" || len(s) > maxSpecLength {
		return nil, fmt.Errorf("%w: JSON path %q: want dotted keys such as user.token", ErrInvalidConfig, s)
	}
	p := JSONPath(strings.Split(s, "."))
	if len(p) > maxPathSegments {
		return nil, fmt.Errorf("%w: JSON path %q: more than %d segments", ErrInvalidConfig, s, maxPathSegments)
	}
	for _, seg := range p {
		if seg == "" || strings.ContainsFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\\' }) {
			return nil, fmt.Errorf("%w: JSON path %q: empty segment or forbidden character", ErrInvalidConfig, s)
		}
	}
	return p, nil
}

// String returns the dotted form.
func (p JSONPath) String() string { return strings.Join(p, ".") }

// stringValue is a JSON string value found at one of the wanted paths:
// its decoded text and its byte range in the document, with the range of
// its whole object member (key included) for dropping it.
type stringValue struct {
	path        int // index into the wanted paths
	text        string
	start, end  int // the value, quotes included
	memberStart int // the member's key, or -1 inside an array
}

var (
	errNotJSON = errors.New("vault: body is not valid JSON")
	// errUncheckable: a valid body the vault will not walk: nested deeper
	// than it checks, or repeating a key on a token path (JSON.parse
	// keeps the last value, a reader keeping the first would see another
	// token).
	errUncheckable = errors.New("vault: body cannot be checked for tokens")
)

// findStrings returns the string values at the wanted paths, in document
// order, at most one per path, in one pass over the body. The walk keeps
// byte offsets, so edits leave every other byte of the body as the
// upstream wrote it.
func findStrings(body []byte, wanted []JSONPath) ([]stringValue, error) {
	matches, err := jsonscan.Find(body, wanted)
	switch {
	case errors.Is(err, jsonscan.ErrSyntax):
		return nil, errNotJSON
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errUncheckable, err)
	}
	found := make([]stringValue, len(matches))
	for i, m := range matches {
		found[i] = stringValue{path: m.Path, text: m.Text, start: m.Start, end: m.End, memberStart: m.MemberStart}
	}
	return found, nil
}

// edit replaces body[start:end] with repl or, with drop, removes the
// object member spanning body[start:end] together with one adjacent comma.
type edit struct {
	start, end int
	repl       []byte
	drop       bool
}

// applyEdits applies edits given in document order, not overlapping, and
// builds the result in one copy of the body. A dropped member's comma is
// chosen against the body as the later edits leave it (two adjacent last
// members must not claim the same comma), so the edits are resolved from
// the last to the first before the copy.
func applyEdits(body []byte, edits []edit) []byte {
	if len(edits) == 0 {
		return body
	}
	resolved := make([]edit, len(edits))
	// What follows each resolved edit once the later ones are applied
	// (see visibleAfter), kept so that looking past a run of dropped
	// members costs O(1).
	nextPos := make([]int, len(edits))
	nextReplaced := make([]bool, len(edits))
	for k := len(edits) - 1; k >= 0; k-- {
		e := edits[k]
		if e.drop {
			e = dropMember(body, e.start, e.end, resolved[k+1:], nextPos[k+1:], nextReplaced[k+1:])
		}
		resolved[k] = e
		nextPos[k], nextReplaced[k] = visibleAfter(body, e.end, resolved[k+1:], nextPos[k+1:], nextReplaced[k+1:])
	}
	size := len(body)
	for _, e := range resolved {
		size += len(e.repl) - (e.end - e.start)
	}
	out := make([]byte, 0, max(size, 0))
	pos := 0
	for _, e := range resolved {
		if e.end <= pos {
			continue // inside a removal that took it along
		}
		out = append(out, body[pos:max(e.start, pos)]...)
		out = append(out, e.repl...)
		pos = e.end
	}
	return append(out, body[pos:]...)
}

// visibleAfter returns the first position from i on whose byte is neither
// a space nor removed once the later edits are applied, and whether an
// edit replaces the byte there. later are the resolved edits after i, in
// order, with their own visibleAfter in nextPos and nextReplaced.
func visibleAfter(body []byte, i int, later []edit, nextPos []int, nextReplaced []bool) (int, bool) {
	for i < len(body) && isSpace(body[i]) && (len(later) == 0 || i < later[0].start) {
		i++
	}
	if len(later) > 0 && i == later[0].start {
		if len(later[0].repl) == 0 {
			return nextPos[0], nextReplaced[0]
		}
		return i, true
	}
	return i, false
}

// dropMember returns the edit removing an object member that spans
// body[memberStart:valueEnd], with one adjacent comma, so the object stays
// valid JSON once the later edits (see visibleAfter) are applied too.
func dropMember(body []byte, memberStart, valueEnd int, later []edit, nextPos []int, nextReplaced []bool) edit {
	// A following comma goes with the member: `"a":1, "t":"x", "b":2`.
	// Edits start at a quote or a comma, never at a space, so the spaces
	// after it are the body's own.
	if i, replaced := visibleAfter(body, valueEnd, later, nextPos, nextReplaced); !replaced && i < len(body) && body[i] == ',' {
		j := i + 1
		for j < len(body) && isSpace(body[j]) {
			j++
		}
		return edit{start: memberStart, end: j}
	}
	// The last member: take the preceding comma instead, if any.
	j := memberStart - 1
	for j >= 0 && isSpace(body[j]) {
		j--
	}
	if j >= 0 && body[j] == ',' {
		return edit{start: j, end: valueEnd}
	}
	return edit{start: memberStart, end: valueEnd}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// redacted replaces a leaked token: no quote, backslash or dot-separated
// base64, so it stays a valid JSON string and is not JWT-shaped itself.
const redacted = "[removed by cloakroom]"

// guardLeaks replaces, in b, every occurrence of the literal tokens and
// every JWT-shaped string, and returns the result and how many it
// replaced. b is read as JSON.parse reads a JSON body, escapes decoded
// ("\u0065yJ…" is "eyJ…"), and what is found goes whole, escapes
// included, so valid JSON stays valid. b itself is never modified.
func guardLeaks(b []byte, literals ...[]byte) ([]byte, int) {
	text, escaped := decodeEscapes(b)
	// found are the ranges of text to replace, in order. Each search runs
	// in the gaps the earlier ones left, as if on their result: a JWT is
	// looked for around a literal already replaced, not through it.
	var found [][2]int
	for _, lit := range literals {
		if len(lit) == 0 {
			continue
		}
		found = searchGaps(text, found, func(text []byte) (found [][2]int) {
			for from := 0; ; {
				i := bytes.Index(text[from:], lit)
				if i < 0 {
					return found
				}
				found = append(found, [2]int{from + i, from + i + len(lit)})
				from += i + len(lit)
			}
		})
	}
	found = searchGaps(text, found, func(text []byte) (found [][2]int) {
		for from := 0; ; {
			i := bytes.Index(text[from:], jwtStart)
			if i < 0 {
				return found
			}
			i += from
			end := jwtEnd(text, i)
			if end < 0 {
				from = i + len(jwtStart)
				continue
			}
			found = append(found, [2]int{i, end})
			from = end
		}
	})
	if len(found) == 0 {
		return b, 0
	}
	if escaped {
		rawRanges(b, found)
	}
	out := make([]byte, 0, len(b)+len(found)*len(redacted))
	pos := 0
	for _, r := range found {
		if r[1] <= pos {
			continue // within an escape already replaced
		}
		out = append(out, b[pos:max(r[0], pos)]...)
		out = append(out, redacted...)
		pos = r[1]
	}
	return append(out, b[pos:]...), len(found)
}

// searchGaps runs search on each stretch of text between the ranges of
// found, which it never sees across, and returns found with what it
// found, in order.
func searchGaps(text []byte, found [][2]int, search func(text []byte) [][2]int) [][2]int {
	if len(found) == 0 {
		return search(text)
	}
	out := make([][2]int, 0, 2*len(found))
	from := 0
	for k := 0; k <= len(found); k++ {
		to := len(text)
		if k < len(found) {
			to = found[k][0]
		}
		for _, r := range search(text[from:to]) {
			out = append(out, [2]int{from + r[0], from + r[1]})
		}
		if k < len(found) {
			out = append(out, found[k])
			from = found[k][1]
		}
	}
	return out
}

// decodeEscapes returns the text of b with its JSON escapes decoded, and
// whether it held any (else the text is b itself). Bytes outside escapes
// are their own text: in valid JSON every backslash is in a string, and
// any other body is read the same way, left to right.
func decodeEscapes(b []byte) ([]byte, bool) {
	i := bytes.IndexByte(b, '\\')
	if i < 0 {
		return b, false
	}
	text := make([]byte, 0, len(b))
	for pos := 0; ; {
		text = append(text, b[pos:i]...)
		decoded, n := jsonscan.AppendEscape(text, b[i:])
		if n == 0 {
			decoded, n = append(text, '\\'), 1 // not an escape: a backslash
		}
		text, pos = decoded, i+n
		j := bytes.IndexByte(b[pos:], '\\')
		if j < 0 {
			return append(text, b[pos:]...), true
		}
		i = pos + j
	}
}

// rawRanges maps ranges of the text of decodeEscapes(b) (in order) back to
// b in place, each widened to whole escapes, in one more walk over b.
func rawRanges(b []byte, ranges [][2]int) {
	var scratch [utf8.UTFMax]byte
	k, atEnd := 0, false // the next boundary to map: ranges[k], its start or its end
	for i, t := 0, 0; i < len(b) && k < len(ranges); {
		// One unit: an escape, or a byte; b[i:i+rawLen] is the text
		// t:t+textLen.
		rawLen, textLen := 1, 1
		if b[i] == '\\' {
			if decoded, n := jsonscan.AppendEscape(scratch[:0], b[i:]); n > 0 {
				rawLen, textLen = n, len(decoded)
			}
		}
		for k < len(ranges) {
			if !atEnd && ranges[k][0] < t+textLen {
				ranges[k][0], atEnd = i, true
			} else if atEnd && ranges[k][1] <= t+textLen {
				ranges[k][1], atEnd = i+rawLen, false
				k++
			} else {
				break
			}
		}
		i, t = i+rawLen, t+textLen
	}
}

// holdsToken reports whether s holds the literal token or a JWT-shaped
// string, without allocating.
func holdsToken(s, literal string) bool {
	if literal != "" && strings.Contains(s, literal) {
		return true
	}
	for from := 0; ; {
		i := strings.Index(s[from:], string(jwtStart))
		if i < 0 {
			return false
		}
		if jwtEnd(s, from+i) >= 0 {
			return true
		}
		from += i + len(jwtStart)
	}
}

// jwtStart begins every JWT: the base64url of `{"`, the start of its
// header.
var jwtStart = []byte("eyJ")

// minJWTSegment is the shortest header or payload counted as JWT-shaped:
// `{"alg":"none"}` alone is 19 characters.
const minJWTSegment = 8

// jwtEnd returns the end of the JWT-shaped string starting at b[i]
// (header.payload.signature, base64url, the signature possibly empty), or
// -1 if it is not one. The character before b[i] must not be base64url,
// else "eyJ" is inside a longer word, unless it ends an escape of a
// character ("%22eyJ", "\x20eyJ", "\u0022eyJ"), which its reader decodes.
// Each run of base64url characters thus holds at most two starts, so a
// search from every "eyJ" stays linear.
func jwtEnd[T string | []byte](b T, i int) int {
	if i > 0 && isB64URL(b[i-1]) && !endsEscape(b, i) {
		return -1
	}
	j := i
	for seg := 0; seg < 3; seg++ {
		k := j
		for k < len(b) && isB64URL(b[k]) {
			k++
		}
		if seg < 2 {
			if k-j < minJWTSegment || k >= len(b) || b[k] != '.' {
				return -1
			}
			k++ // the dot
		}
		j = k
	}
	return j
}

// endsEscape reports whether b[:i] ends with %XX, \xXX or \uXXXX.
func endsEscape[T string | []byte](b T, i int) bool {
	hexBefore := func(n int) bool {
		for k := i - n; k < i; k++ {
			if !isHex(b[k]) {
				return false
			}
		}
		return true
	}
	return i >= 3 && b[i-3] == '%' && hexBefore(2) ||
		i >= 4 && b[i-4] == '\\' && b[i-3] == 'x' && hexBefore(2) ||
		i >= 6 && b[i-6] == '\\' && b[i-5] == 'u' && hexBefore(4)
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func isB64URL(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// ErrNoUser means a captured token does not name its user in the
// configured claim.
var ErrNoUser = errors.New("vault: the token does not name a user")

// maxUserLength matches the session manager's bound on user IDs.
const maxUserLength = 256

// userFromToken reads claim from a JWT's payload, unverified: the token
// comes from our own upstream, and the gateway only needs to know whose
// session to start. A string or number claim is accepted.
func userFromToken(token, claim string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: not a JWT", ErrNoUser)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("%w: payload is not base64url", ErrNoUser)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return "", fmt.Errorf("%w: payload is not a JSON object", ErrNoUser)
	}
	var user string
	switch v := claims[claim].(type) {
	case string:
		user = v
	case json.Number:
		user = v.String()
	default:
		return "", fmt.Errorf("%w: no string or number claim %q", ErrNoUser, claim)
	}
	if user == "" || len(user) > maxUserLength || user[0] == ' ' || user[len(user)-1] == ' ' ||
		strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("%w: claim %q is empty, too long or holds control characters", ErrNoUser, claim)
	}
	return user, nil
}
