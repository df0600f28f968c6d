package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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

func (p JSONPath) equal(segs []string) bool {
	if len(p) != len(segs) {
		return false
	}
	for i := range p {
		if p[i] != segs[i] {
			return false
		}
	}
	return true
}

// stringValue is a JSON string value found at one of the wanted paths:
// its decoded text and its byte range in the document, with the range of
// its whole object member (key included) for dropping it.
type stringValue struct {
	path        int // index into the wanted paths
	text        string
	start, end  int // the value, quotes included
	memberStart int // the member's key, or -1 inside an array
}

type frame struct {
	object    bool
	expectKey bool
	key       string
	keyStart  int
	index     int
}

var errNotJSON = errors.New("vault: body is not valid JSON")

// findStrings returns the string values at the wanted paths, in document
// order. The walk keeps byte offsets, so edits leave every other byte of
// the body as the upstream wrote it.
func findStrings(body []byte, wanted []JSONPath) ([]stringValue, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var (
		stack []frame
		path  []string
		found []stringValue
		prev  int
	)
	// valueDone advances the enclosing container after a value.
	valueDone := func() {
		if n := len(stack); n > 0 {
			f := &stack[n-1]
			if f.object {
				f.expectKey = true
			} else {
				f.index++
			}
		}
	}
	// currentPath is the path of the value about to be read.
	currentPath := func() []string {
		path = path[:0]
		for _, f := range stack {
			if f.object {
				path = append(path, f.key)
			} else {
				path = append(path, strconv.Itoa(f.index))
			}
		}
		return path
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errNotJSON
		}
		end := int(dec.InputOffset())
		start := prev
		prev = end
		var top *frame
		if n := len(stack); n > 0 {
			top = &stack[n-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				// The container is a value of its parent: its path
				// segment is fixed when the parent is pushed below.
				stack = append(stack, frame{object: d == '{', expectKey: d == '{'})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		}
		if top != nil && top.object && top.expectKey {
			top.key = tok.(string)
			top.keyStart = start + bytes.IndexByte(body[start:end], '"')
			top.expectKey = false
			continue
		}
		if s, ok := tok.(string); ok {
			p := currentPath()
			for i, w := range wanted {
				if w.equal(p) {
					v := stringValue{path: i, text: s, start: start + bytes.IndexByte(body[start:end], '"'), end: end, memberStart: -1}
					if top != nil && top.object {
						v.memberStart = top.keyStart
					}
					found = append(found, v)
					break
				}
			}
		}
		valueDone()
	}
	if len(stack) > 0 {
		return nil, errNotJSON // truncated
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

// applyEdits applies edits given in document order, from the last to the
// first, so each sees the bytes before it unchanged; a dropped member's
// comma is chosen against the body as the later edits left it (two
// adjacent last members must not claim the same comma).
func applyEdits(body []byte, edits []edit) []byte {
	if len(edits) == 0 {
		return body
	}
	out := append([]byte(nil), body...)
	for i := len(edits) - 1; i >= 0; i-- {
		e := edits[i]
		if e.drop {
			e = dropMember(out, e.start, e.end)
		}
		out = append(out[:e.start], append(append([]byte(nil), e.repl...), out[e.end:]...)...)
	}
	return out
}

// dropMember returns the edit removing an object member that spans
// body[memberStart:valueEnd], with one adjacent comma, so the object stays
// valid JSON.
func dropMember(body []byte, memberStart, valueEnd int) edit {
	// A following comma goes with the member: `"a":1, "t":"x", "b":2`.
	i := valueEnd
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i < len(body) && body[i] == ',' {
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
// replaced. b itself is never modified.
func guardLeaks(b []byte, literals ...[]byte) ([]byte, int) {
	n := 0
	for _, lit := range literals {
		if len(lit) == 0 || !bytes.Contains(b, lit) {
			continue
		}
		n += bytes.Count(b, lit)
		b = bytes.ReplaceAll(b, lit, []byte(redacted))
	}
	if !bytes.Contains(b, jwtStart) {
		return b, n
	}
	var out []byte
	pos, from := 0, 0
	for {
		i := bytes.Index(b[from:], jwtStart)
		if i < 0 {
			break
		}
		i += from
		end := jwtEnd(b, i)
		if end < 0 {
			from = i + len(jwtStart)
			continue
		}
		out = append(out, b[pos:i]...)
		out = append(out, redacted...)
		n++
		pos, from = end, end
	}
	if out == nil {
		return b, n
	}
	return append(out, b[pos:]...), n
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
// else "eyJ" is inside a longer word.
func jwtEnd[T string | []byte](b T, i int) int {
	if i > 0 && isB64URL(b[i-1]) {
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
