package vault

import (
	"bytes"
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// jwtScanner finds JWT-shaped strings (header.payload.signature, the first
// two of at least minJWTSegment base64url characters) wherever they start,
// also right after a base64url character ("%22eyJ…", "%20eyJ…"), in bytes
// given piece by piece. Each byte is looked at a bounded number of times,
// so a scan is linear in what it is given.
//
// Once a candidate has its header and payload, the rest of its run of
// base64url characters and dots counts as part of it: a JWT glued to more
// (a second token after its last dot) is taken whole. A candidate still
// without its payload after maxJWTHold bytes is taken too: a stream cannot
// hold it back for ever, and no real token is that long.
type jwtScanner struct {
	cand   int // start of the open candidate; -1 when none
	seg    int // the candidate's segment: 0 header, 1 payload
	segLen int
	inJWT  bool // inside a JWT-shaped run, which goes on to its end
	start  int  // start of the JWT-shaped run, when inJWT
	// partial is how many bytes of "eyJ" end what was scanned, so that a
	// start split between two pieces is found without scanning again.
	partial int
}

// maxJWTHold bounds an undecided candidate; see jwtScanner.
const maxJWTHold = 16 << 10

// Byte classes of the scan.
const (
	classOther = iota
	classB64
	classDot
)

var jwtClass = func() (t [256]uint8) {
	for c := range 256 {
		if isB64URL(byte(c)) {
			t[c] = classB64
		}
	}
	t['.'] = classDot
	return t
}()

// What scanJWT stopped at.
const (
	jwtNone  = iota // the end of what it was given
	jwtFound        // a JWT-shaped run starts at j.start
	jwtEnded        // the JWT-shaped run ended at the returned offset
)

func newJWTScanner() jwtScanner { return jwtScanner{cand: -1} }

// scanJWT advances j over b[i:end] and returns where it stopped and why.
// Offsets are b's; the caller passes the same b, grown, to go on.
func scanJWT[T string | []byte](j *jwtScanner, b T, i, end int) (int, int) {
	for i < end {
		switch {
		case j.inJWT:
			for i < end && jwtClass[b[i]] != classOther {
				i++
			}
			if i < end {
				j.inJWT = false
				return i, jwtEnded
			}
		case j.cand >= 0:
			limit := min(end, j.cand+maxJWTHold)
			for i < limit && jwtClass[b[i]] == classB64 {
				j.segLen++
				i++
			}
			switch {
			case i == j.cand+maxJWTHold:
				j.inJWT, j.start, j.cand = true, j.cand, -1
				return i, jwtFound
			case i == end:
			case jwtClass[b[i]] == classDot && j.segLen >= minJWTSegment:
				i++
				j.seg++
				j.segLen = 0
				if j.seg == 2 {
					j.inJWT, j.start, j.cand = true, j.cand, -1
					return i, jwtFound
				}
			default:
				// A short segment or the end of the run: not a JWT, nor
				// is any candidate that started inside this one. The
				// search goes on from here.
				j.cand = -1
			}
		default:
			if j.partial > 0 {
				// The bytes before b[i] began "eyJ".
				for j.partial < len(jwtStart) && i < end && b[i] == jwtStart[j.partial] {
					j.partial++
					i++
				}
				if j.partial == len(jwtStart) {
					j.cand, j.seg, j.segLen, j.partial = i-len(jwtStart), 0, len(jwtStart), 0
					continue
				}
				if i == end {
					return end, jwtNone
				}
				j.partial = 0 // b[i] may begin one itself
			}
			k := indexJWTStart(b, i, end)
			if k < 0 {
				switch {
				case end-i >= 2 && b[end-2] == 'e' && b[end-1] == 'y':
					j.partial = 2
				case end-i >= 1 && b[end-1] == 'e':
					j.partial = 1
				}
				return end, jwtNone
			}
			j.cand, j.seg, j.segLen = k, 0, len(jwtStart)
			i = k + len(jwtStart)
		}
	}
	return end, jwtNone
}

// indexJWTStart returns the offset of the first "eyJ" in b[i:end], or -1.
func indexJWTStart[T string | []byte](b T, i, end int) int {
	var k int
	switch v := any(b[i:end]).(type) {
	case string:
		k = strings.Index(v, string(jwtStart))
	case []byte:
		k = bytes.Index(v, jwtStart)
	}
	if k < 0 {
		return -1
	}
	return i + k
}

// holdFrom returns where the bytes that may still turn out to be part of a
// JWT-shaped string begin, given end bytes scanned: the open candidate, or
// a trailing "e" or "ey".
func (j *jwtScanner) holdFrom(end int) int {
	if j.cand >= 0 {
		return j.cand
	}
	return end - j.partial // a JWT's own bytes are masked, not held
}

// hasJWTShape reports whether s holds a JWT-shaped string anywhere.
func hasJWTShape(s string) bool {
	j := newJWTScanner()
	_, ev := scanJWT(&j, s, 0, len(s))
	return ev == jwtFound
}

// holdsAny reports whether s holds one of the known tokens or a JWT-shaped
// string.
func holdsAny(s string, known []string) bool {
	for _, k := range known {
		if k != "" && strings.Contains(s, k) {
			return true
		}
	}
	return hasJWTShape(s)
}

// Bounds of carriesToken's decoding: rounds of unescaping (a token
// percent-encoded twice, or JSON-escaped then percent-encoded) and levels
// of base64 (a cookie holding base64 JSON).
const (
	maxUnescapeRounds = 4
	maxBase64Depth    = 2
	// minBase64Run is the shortest run decoded: the base64 of a
	// 15-byte string (tokens are longer).
	minBase64Run = 20
)

// carriesToken reports whether a header value holds one of the known
// tokens or a JWT-shaped string, as it is or once decoded: percent-encoding
// and JSON string escapes (also nested), and base64 or base64url runs (a
// cookie holding base64 JSON). Its cost is linear in len(v).
func carriesToken(v string, known []string) bool {
	return carriesTokenAt(v, known, maxBase64Depth)
}

func carriesTokenAt(v string, known []string, depth int) bool {
	if holdsAny(v, known) {
		return true
	}
	if strings.ContainsAny(v, `%\`) {
		for range maxUnescapeRounds {
			next := unescape(v)
			if next == v {
				break
			}
			v = next
			if holdsAny(v, known) {
				return true
			}
		}
	}
	if depth == 0 {
		return false
	}
	for from := 0; from < len(v); {
		start, end := nextBase64Run(v, from)
		if start < 0 {
			break
		}
		if end-start >= minBase64Run {
			if dec, ok := decodeBase64Run(v[start:end]); ok && carriesTokenAt(dec, known, depth-1) {
				return true
			}
		}
		from = end
	}
	return false
}

func isBase64Char(c byte) bool { return isB64URL(c) || c == '+' || c == '/' }

// nextBase64Run returns the next maximal run of base64 or base64url
// characters in v[from:], with its padding, or -1.
func nextBase64Run(v string, from int) (int, int) {
	i := from
	for i < len(v) && !isBase64Char(v[i]) {
		i++
	}
	if i == len(v) {
		return -1, len(v)
	}
	j := i
	for j < len(v) && isBase64Char(v[j]) {
		j++
	}
	for j < len(v) && v[j] == '=' {
		j++
	}
	return i, j
}

// decodeBase64Run decodes a run in the alphabet its characters name
// (base64 with + and /, base64url with - and _), padded or not, leniently
// about a last incomplete group.
func decodeBase64Run(run string) (string, bool) {
	run = strings.TrimRight(run, "=")
	std, url := strings.ContainsAny(run, "+/"), strings.ContainsAny(run, "-_")
	if std && url {
		return "", false
	}
	enc := base64.RawURLEncoding
	if std {
		enc = base64.RawStdEncoding
	}
	if len(run)%4 == 1 {
		run = run[:len(run)-1]
	}
	dec, err := enc.DecodeString(run)
	if err != nil {
		return "", false
	}
	return string(dec), true
}

// unescape undoes one level of percent-encoding (%XX) and of JSON string
// escapes (\uXXXX, \", \\, \/, \b, \f, \n, \r, \t) in s; anything that is
// not a valid escape stays as it is. It returns s itself when nothing
// changed.
func unescape(s string) string {
	i := strings.IndexAny(s, `%\`)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	changed := false
	for i < len(s) {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 3
			changed = true
			continue
		case c == '\\' && i+1 < len(s):
			if r, n := jsonEscape(s[i:]); n > 0 {
				b.WriteRune(r)
				i += n
				changed = true
				continue
			}
		}
		b.WriteByte(c)
		i++
	}
	if !changed {
		return s
	}
	return b.String()
}

// jsonEscape decodes the JSON escape at the start of s ("\n", "\u0065"),
// returning the rune and its length, or 0 if s does not start with one.
func jsonEscape(s string) (rune, int) {
	switch s[1] {
	case '"', '\\', '/':
		return rune(s[1]), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		if len(s) < 6 {
			return 0, 0
		}
		var r rune
		for k := 2; k < 6; k++ {
			if !isHex(s[k]) {
				return 0, 0
			}
			r = r<<4 | rune(unhex(s[k]))
		}
		if !utf8.ValidRune(r) {
			r = utf8.RuneError // a lone surrogate
		}
		return r, 6
	}
	return 0, 0
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
