// Package jsonscan walks a JSON document once, in time linear in its size,
// keeping byte offsets: it finds the string values at given paths, or the
// object members whose key a function picks, for callers that rewrite
// those bytes and leave every other byte as it was. It accepts what
// encoding/json accepts (one value, RFC 8259, bytes of any value inside
// strings) up to MaxDepth levels of nesting, and decodes strings as
// encoding/json does.
package jsonscan

import (
	"errors"
	"math/bits"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting walked: one frame per level is kept, and
// no JSON a browser app receives or sends comes close.
const MaxDepth = 512

// MaxPaths is the most paths [Find] looks for at once.
const MaxPaths = 64

var (
	// ErrSyntax: the document is not valid JSON.
	ErrSyntax = errors.New("jsonscan: not valid JSON")
	// ErrTooDeep: the document nests deeper than MaxDepth.
	ErrTooDeep = errors.New("jsonscan: nested deeper than 512 levels")
	// ErrDuplicate: an object repeats a key on a wanted path, so a reader
	// keeping the first value and one keeping the last (JSON.parse) see
	// different documents.
	ErrDuplicate = errors.New("jsonscan: a key on a wanted path is repeated")
	// ErrTooManyPaths: more than MaxPaths paths were asked for.
	ErrTooManyPaths = errors.New("jsonscan: more than 64 paths")
)

// Match is a string value at one of the wanted paths.
type Match struct {
	Path        int    // index into the wanted paths
	Text        string // decoded as encoding/json decodes it
	Start, End  int    // the value, quotes included
	MemberStart int    // the opening quote of its member's key, or -1 in an array
}

// Member is an object member: from its key's opening quote to the end of
// its value.
type Member struct{ Start, End int }

// Find returns the string values at the wanted paths, in document order.
// A path is a list of object keys and array indexes (decimal, as
// strconv.Itoa writes them); a segment that is a number matches both an
// array index and an object key. The paths must be distinct. A path is
// matched at most once: an object that repeats the key leading to a
// wanted path makes Find fail with ErrDuplicate.
func Find[P ~[]string](doc []byte, wanted []P) ([]Match, error) {
	if len(wanted) > MaxPaths {
		return nil, ErrTooManyPaths
	}
	s := scanner{doc: doc}
	s.paths = make([][]string, len(wanted))
	longest := 0
	for i, p := range wanted {
		s.paths[i] = p
		longest = max(longest, len(p))
	}
	// lenIs[n] and longer[n]: the paths of exactly n, and of more than n,
	// segments. index[i][d]: segment d of path i as an array index, or -1.
	s.lenIs = make([]uint64, longest+1)
	s.longer = make([]uint64, longest+1)
	s.index = make([][]int, len(wanted))
	for i, p := range s.paths {
		s.lenIs[len(p)] |= 1 << i
		for n := range len(p) {
			s.longer[n] |= 1 << i
		}
		s.index[i] = make([]int, len(p))
		for d, seg := range p {
			s.index[i][d] = -1
			if n, err := strconv.Atoi(seg); err == nil && n >= 0 && strconv.Itoa(n) == seg {
				s.index[i][d] = n
			}
		}
	}
	if err := s.walk(); err != nil {
		return nil, err
	}
	return s.matches, nil
}

// Members returns the object members, at any depth, whose decoded key
// drop reports true for, in document order; members inside a returned
// member's value are not looked at. drop must not keep key.
func Members(doc []byte, drop func(key []byte) bool) ([]Member, error) {
	s := scanner{doc: doc, drop: drop}
	if err := s.walk(); err != nil {
		return nil, err
	}
	return s.members, nil
}

// Valid reports whether doc is valid JSON nested at most MaxDepth deep.
func Valid(doc []byte) bool {
	s := scanner{doc: doc}
	return s.walk() == nil
}

type scanner struct {
	doc   []byte
	stack []frame

	// Find
	paths         [][]string
	lenIs, longer []uint64
	index         [][]int
	matches       []Match

	// Members
	drop      func(key []byte) bool
	dropLevel int // the level of the member being dropped, 0 for none
	members   []Member

	scratch []byte // a decoded key
}

// frame is an open object or array. live holds the wanted paths that go
// on below it: their segment at this level is compared with each key or
// index.
type frame struct {
	object   bool
	live     uint64
	seen     uint64 // objects: the paths whose key at this level was met
	index    int    // arrays: the current element
	keyStart int    // objects: the current member's key
	dropping bool   // objects: the current member is to be dropped
}

// walk checks the whole document and collects what was asked for.
func (s *scanner) walk() error {
	b := s.doc
	i := skipSpace(b, 0)
	// want: the paths the value at i may lie on (the root lies on all of
	// them, as their prefix); memberStart: its member's key, or -1.
	want, memberStart := uint64(1)<<len(s.paths)-1, -1
	for {
		// A value starts at i.
		if i >= len(b) {
			return ErrSyntax
		}
		level := len(s.stack) // the length of the value's path
		switch c := b[i]; {
		case c == '{' || c == '[':
			if level == MaxDepth {
				return ErrTooDeep
			}
			f := frame{object: c == '{'}
			if level < len(s.longer) {
				f.live = want & s.longer[level]
			}
			s.stack = append(s.stack, f)
			i = skipSpace(b, i+1)
			if i < len(b) && (b[i] == '}' && c == '{' || b[i] == ']' && c == '[') {
				s.stack = s.stack[:level]
				i++
				break // an empty container is a complete value
			}
			if c == '{' {
				var err error
				if i, want, err = s.key(i); err != nil {
					return err
				}
				memberStart = s.stack[level].keyStart
			} else {
				want, memberStart = s.element(), -1
			}
			continue
		case c == '"':
			end, plain := scanString(b, i)
			if end < 0 {
				return ErrSyntax
			}
			if level < len(s.lenIs) {
				if exact := want & s.lenIs[level]; exact != 0 {
					s.matches = append(s.matches, Match{
						Path: bits.TrailingZeros64(exact), Text: decode(b[i+1:end-1], plain),
						Start: i, End: end, MemberStart: memberStart,
					})
				}
			}
			i = end
		case c == '-' || '0' <= c && c <= '9':
			if i = scanNumber(b, i); i < 0 {
				return ErrSyntax
			}
		case c == 't':
			i = literal(b, i, "true")
		case c == 'f':
			i = literal(b, i, "false")
		case c == 'n':
			i = literal(b, i, "null")
		default:
			return ErrSyntax
		}
		if i < 0 {
			return ErrSyntax
		}
		// A value ended at i: close the containers it completes, and
		// move to the next member or element.
		for {
			i = skipSpace(b, i)
			n := len(s.stack)
			if n == 0 {
				if i != len(b) {
					return ErrSyntax
				}
				return nil
			}
			f := &s.stack[n-1]
			if f.dropping {
				s.members = append(s.members, Member{f.keyStart, valueEnd(b, i)})
				f.dropping, s.dropLevel = false, 0
			}
			if i >= len(b) {
				return ErrSyntax
			}
			if b[i] == ',' {
				i = skipSpace(b, i+1)
				if f.object {
					var err error
					if i, want, err = s.key(i); err != nil {
						return err
					}
					memberStart = f.keyStart
				} else {
					f.index++
					want, memberStart = s.element(), -1
				}
				break
			}
			if b[i] != '}' && b[i] != ']' || (b[i] == '}') != f.object {
				return ErrSyntax
			}
			s.stack = s.stack[:n-1]
			i++
		}
	}
}

// valueEnd returns the end of the value that ended just before i, with
// the whitespace after it skipped: the last non-space byte before i.
func valueEnd(b []byte, i int) int {
	for i > 0 && isSpace(b[i-1]) {
		i--
	}
	return i
}

// key reads a member's key at b[i] and the colon after it, and returns
// where its value starts and the wanted paths the value lies on.
func (s *scanner) key(i int) (int, uint64, error) {
	b := s.doc
	if i >= len(b) || b[i] != '"' {
		return 0, 0, ErrSyntax
	}
	end, plain := scanString(b, i)
	if end < 0 {
		return 0, 0, ErrSyntax
	}
	level := len(s.stack) - 1
	f := &s.stack[level]
	f.keyStart = i
	raw := b[i+1 : end-1]
	var want uint64
	if f.live != 0 {
		key := raw
		if !plain {
			s.scratch = appendDecoded(s.scratch[:0], raw)
			key = s.scratch
		}
		for m := f.live; m != 0; m &= m - 1 {
			p := bits.TrailingZeros64(m)
			if s.paths[p][level] == string(key) {
				want |= 1 << p
			}
		}
		if f.seen&want != 0 {
			return 0, 0, ErrDuplicate
		}
		f.seen |= want
	}
	if s.drop != nil && s.dropLevel == 0 {
		key := raw
		if !plain {
			s.scratch = appendDecoded(s.scratch[:0], raw)
			key = s.scratch
		}
		if s.drop(key) {
			f.dropping, s.dropLevel = true, level+1
		}
	}
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return 0, 0, ErrSyntax
	}
	return skipSpace(b, i+1), want, nil
}

// element returns the wanted paths the current element of the innermost
// array lies on.
func (s *scanner) element() uint64 {
	level := len(s.stack) - 1
	f := &s.stack[level]
	var want uint64
	for m := f.live; m != 0; m &= m - 1 {
		p := bits.TrailingZeros64(m)
		if s.index[p][level] == f.index {
			want |= 1 << p
		}
	}
	return want
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func literal(b []byte, i int, word string) int {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return -1
	}
	return i + len(word)
}

// scanNumber returns the end of the number at b[i], or -1.
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// scanString returns the end (after the closing quote) of the string
// starting at b[i], or -1, and whether its bytes are its text: no escape
// and no byte outside ASCII.
func scanString(b []byte, i int) (end int, plain bool) {
	plain = true
	for i++; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, plain
		case c == '\\':
			n := escapeLen(b[i:])
			if n == 0 {
				return -1, false
			}
			i += n
			plain = false
		case c < 0x20:
			return -1, false
		default:
			if c >= utf8.RuneSelf {
				plain = false
			}
			i++
		}
	}
	return -1, false
}

// escapeLen returns the length of the escape b starts with, or 0 if it
// does not start with one.
func escapeLen(b []byte) int {
	if len(b) < 2 || b[0] != '\\' {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if hex4(b[2:]) >= 0 {
			return 6
		}
	}
	return 0
}

// hex4 reads four hex digits, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

func decode(raw []byte, plain bool) string {
	if plain {
		return string(raw)
	}
	return string(appendDecoded(nil, raw))
}

// appendDecoded appends the text of a string's raw bytes (between the
// quotes, already checked) as encoding/json decodes it.
func appendDecoded(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			var n int
			dst, n = AppendEscape(dst, raw[i:])
			i += n
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			dst = utf8.AppendRune(dst, r) // an invalid byte becomes U+FFFD
			i += size
		}
	}
	return dst
}

// AppendEscape decodes the JSON escape b starts with as encoding/json
// does (a \u surrogate pair is one character, a lone surrogate U+FFFD),
// appends it to dst, and returns how many bytes of b it took: 0, with dst
// unchanged, if b does not start with an escape.
func AppendEscape(dst, b []byte) ([]byte, int) {
	n := escapeLen(b)
	switch {
	case n == 0:
		return dst, 0
	case n == 2:
		c := b[1]
		switch c {
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		}
		return append(dst, c), 2
	}
	r := hex4(b[2:])
	if utf16.IsSurrogate(r) {
		if len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
			if pair := utf16.DecodeRune(r, hex4(b[8:])); pair != unicode.ReplacementChar {
				return utf8.AppendRune(dst, pair), 12
			}
		}
		r = unicode.ReplacementChar
	}
	return utf8.AppendRune(dst, r), 6
}
