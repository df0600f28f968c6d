package dbsc

import (
	"errors"
	"fmt"
	"strings"
)

// The DBSC header names.
const (
	HeaderRegistration = "Secure-Session-Registration" // response: offers registration
	HeaderChallenge    = "Secure-Session-Challenge"    // response: a challenge for the next proof
	HeaderResponse     = "Secure-Session-Response"     // request: a proof
	HeaderSessionID    = "Sec-Secure-Session-Id"       // request: the session a refresh is for
	HeaderSkipped      = "Secure-Session-Skipped"      // request: bound cookies left out on purpose
)

// MaxHeaderSize bounds a DBSC header value the parsers read: a
// Secure-Session-Response holds a proof of at most MaxProofSize.
const MaxHeaderSize = MaxProofSize + 1<<10

// Registration is one entry of a Secure-Session-Registration header: the
// algorithms the server accepts, the registration endpoint's path (or
// URL), the challenge the registration proof must carry as jti, and an
// optional authorization value the browser copies into the proof.
type Registration struct {
	Algorithms    []string // nil means ES256 and RS256
	Path          string
	Challenge     string
	Authorization string // "" for none
}

// Header returns the Secure-Session-Registration value offering r, such as
//
//	(ES256 RS256);path="/dbsc/register";challenge="c";authorization="a"
//
// Path, Challenge and Authorization must be printable ASCII: any other
// byte cannot be sent in an sf-string and is left out. An algorithm that
// is not an sf-token is left out too.
func (r Registration) Header() string {
	algorithms := r.Algorithms
	if algorithms == nil {
		algorithms = []string{AlgES256, AlgRS256}
	}
	var b strings.Builder
	b.WriteByte('(')
	n := 0
	for _, alg := range algorithms {
		if !isToken(alg) {
			continue
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(alg)
		n++
	}
	b.WriteString(");path=")
	appendString(&b, r.Path)
	b.WriteString(";challenge=")
	appendString(&b, r.Challenge)
	if r.Authorization != "" {
		b.WriteString(";authorization=")
		appendString(&b, r.Authorization)
	}
	return b.String()
}

// ParseRegistration reads a Secure-Session-Registration value (an sf-list
// of inner lists of algorithm tokens) as a browser does: algorithms other
// than ES256 and RS256 are dropped, and entries without a path or without
// an algorithm left are skipped. A value that is not a list of inner lists
// or leaves no entry fails with ErrMalformed.
func ParseRegistration(value string) ([]Registration, error) {
	members, err := parseHeader(value, true)
	if err != nil {
		return nil, err
	}
	var out []Registration
	for _, m := range members {
		if !m.inner {
			return nil, fmt.Errorf("%w: registration entries are inner lists of algorithms", ErrMalformed)
		}
		var r Registration
		for _, alg := range m.items {
			if alg.kind != kindToken {
				return nil, fmt.Errorf("%w: an algorithm is not a token", ErrMalformed)
			}
			if alg.text == AlgES256 || alg.text == AlgRS256 {
				r.Algorithms = append(r.Algorithms, alg.text)
			}
		}
		path, hasPath := m.param("path")
		if !hasPath || path.kind != kindString || len(r.Algorithms) == 0 {
			continue
		}
		r.Path = path.text
		for _, p := range []struct {
			key   string
			field *string
		}{{"challenge", &r.Challenge}, {"authorization", &r.Authorization}} {
			if v, ok := m.param(p.key); ok {
				if v.kind != kindString {
					return nil, fmt.Errorf("%w: registration parameter %s is not a string", ErrMalformed, p.key)
				}
				*p.field = v.text
			}
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no registration entry with a path and a known algorithm", ErrMalformed)
	}
	return out, nil
}

// ChallengeHeader returns the Secure-Session-Challenge value carrying a
// challenge for the session sessionID: "challenge";id="sessionID". Both
// must be printable ASCII; other bytes are left out.
func ChallengeHeader(challenge, sessionID string) string {
	var b strings.Builder
	appendString(&b, challenge)
	b.WriteString(";id=")
	appendString(&b, sessionID)
	return b.String()
}

// Challenge is one member of a Secure-Session-Challenge header.
type Challenge struct {
	Challenge string
	SessionID string // the id parameter; "" when absent (a browser ignores such a challenge)
}

// ParseChallenges reads a Secure-Session-Challenge value: a list of
// sf-strings, each with an id parameter naming its session. Other
// parameters are ignored.
func ParseChallenges(value string) ([]Challenge, error) {
	items, err := parseTaggedList(value, kindString, "id", "a challenge is a quoted string", "a challenge's id is not a string")
	if err != nil {
		return nil, err
	}
	out := make([]Challenge, len(items))
	for i, it := range items {
		out[i] = Challenge{Challenge: it.text, SessionID: it.tag}
	}
	return out, nil
}

// ParseSessionID reads a Sec-Secure-Session-Id value and returns the
// session identifier. The specification makes it an sf-string, read so
// (its parameters ignored) when the value starts with a quote; Chromium
// 156 sends the identifier raw instead, so any other value is taken as the
// identifier itself: printable ASCII, surrounding spaces trimmed. Session
// identifiers that are base64url read the same either way.
func ParseSessionID(value string) (string, error) {
	if len(value) > MaxHeaderSize {
		return "", fmt.Errorf("%w: header value longer than %d bytes", ErrMalformed, MaxHeaderSize)
	}
	value = strings.Trim(value, " \t")
	if strings.HasPrefix(value, `"`) {
		item, err := parseSingleItem(value)
		if err != nil {
			return "", err
		}
		if item.text == "" {
			return "", fmt.Errorf("%w: empty session id", ErrMalformed)
		}
		return item.text, nil
	}
	if value == "" {
		return "", fmt.Errorf("%w: empty session id", ErrMalformed)
	}
	for i := 0; i < len(value); i++ {
		if value[i] < 0x20 || value[i] > 0x7e {
			return "", fmt.Errorf("%w: the session id is not printable ASCII", ErrMalformed)
		}
	}
	return value, nil
}

// ParseResponse reads a Secure-Session-Response value, one sf-string (its
// parameters ignored), and returns the proof JWT in it. A bare sf-token is
// accepted too: Chromium 156 sends the JWT unquoted, and every JWT is a
// valid token. The JWT is not checked here;
// VerifyRegistration and VerifyRefresh do that.
func ParseResponse(value string) (string, error) {
	item, err := parseSingleItem(value)
	if err != nil {
		return "", err
	}
	if (item.kind != kindString && item.kind != kindToken) || item.text == "" {
		return "", fmt.Errorf("%w: the response is not a quoted proof", ErrMalformed)
	}
	return item.text, nil
}

// Skipped is one member of a Secure-Session-Skipped request header: why
// the browser sent a request without a session's bound cookie.
type Skipped struct {
	Reason    string // unreachable, server_error, quota_exceeded, or a future reason
	SessionID string // the session_identifier parameter; "" when absent
}

// ParseSkipped reads a Secure-Session-Skipped value: a list of reason
// tokens, each with a session_identifier string parameter.
func ParseSkipped(value string) ([]Skipped, error) {
	items, err := parseTaggedList(value, kindToken, "session_identifier", "a skip reason is a token", "session_identifier is not a string")
	if err != nil {
		return nil, err
	}
	out := make([]Skipped, len(items))
	for i, it := range items {
		out[i] = Skipped{Reason: it.text, SessionID: it.tag}
	}
	return out, nil
}

// taggedItem is a list member's value and its tag, a string parameter
// ("" when absent).
type taggedItem struct{ text, tag string }

// parseTaggedList reads a list whose members are bare items of kind, each
// with an optional string parameter named tag (others ignored); notKind
// and badTag word the errors.
func parseTaggedList(value string, kind itemKind, tag, notKind, badTag string) ([]taggedItem, error) {
	members, err := parseHeader(value, true)
	if err != nil {
		return nil, err
	}
	out := make([]taggedItem, 0, len(members))
	for _, m := range members {
		if m.inner || m.items[0].kind != kind {
			return nil, fmt.Errorf("%w: %s", ErrMalformed, notKind)
		}
		it := taggedItem{text: m.items[0].text}
		if p, ok := m.param(tag); ok {
			if p.kind != kindString {
				return nil, fmt.Errorf("%w: %s", ErrMalformed, badTag)
			}
			it.tag = p.text
		}
		out = append(out, it)
	}
	return out, nil
}

// appendString writes s as an RFC 8941 sf-string: quoted, with " and \
// escaped, and bytes outside printable ASCII (which it cannot hold) left
// out.
func appendString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			continue
		}
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
}

// Structured-field parsing (RFC 8941 §4.2), for the types DBSC headers
// use: lists, inner lists, items and parameters. Bare items of every type
// are read, so parameters a future version adds are skipped, but only
// strings and tokens keep their value.

type itemKind byte

const (
	kindString itemKind = iota + 1
	kindToken
	kindOther // integer, decimal, boolean, byte sequence
)

type bareItem struct {
	kind itemKind
	text string
}

type param struct {
	key   string
	value bareItem
}

// member is one list member: an item (items holds one) or an inner list.
type member struct {
	inner  bool
	items  []bareItem
	params []param
}

// param returns the last value of parameter key, as RFC 8941 keeps it.
func (m member) param(key string) (bareItem, bool) {
	for i := len(m.params) - 1; i >= 0; i-- {
		if m.params[i].key == key {
			return m.params[i].value, true
		}
	}
	return bareItem{}, false
}

var errSyntax = errors.New("not a structured header value")

type sfParser struct {
	s string
	i int
}

// parseHeader parses value as an sf-list (list true) or an sf-item.
func parseHeader(value string, list bool) ([]member, error) {
	if len(value) > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header value longer than %d bytes", ErrMalformed, MaxHeaderSize)
	}
	p := &sfParser{s: strings.Trim(value, " ")}
	var members []member
	for {
		m, err := p.member(list)
		if err != nil {
			return nil, fmt.Errorf("%w: %v at byte %d", ErrMalformed, err, p.i)
		}
		members = append(members, m)
		p.skipOWS()
		if p.i == len(p.s) {
			return members, nil
		}
		if !list || p.s[p.i] != ',' {
			return nil, fmt.Errorf("%w: %v at byte %d", ErrMalformed, errSyntax, p.i)
		}
		p.i++
		p.skipOWS()
		if p.i == len(p.s) {
			return nil, fmt.Errorf("%w: trailing comma", ErrMalformed)
		}
	}
}

func parseSingleItem(value string) (bareItem, error) {
	members, err := parseHeader(value, false)
	if err != nil {
		return bareItem{}, err
	}
	return members[0].items[0], nil
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) member(innerAllowed bool) (member, error) {
	var m member
	if p.i < len(p.s) && p.s[p.i] == '(' {
		if !innerAllowed {
			return m, errSyntax
		}
		m.inner = true
		p.i++
		for {
			for p.i < len(p.s) && p.s[p.i] == ' ' {
				p.i++
			}
			if p.i == len(p.s) {
				return m, errors.New("unterminated inner list")
			}
			if p.s[p.i] == ')' {
				p.i++
				break
			}
			item, err := p.bareItem()
			if err != nil {
				return m, err
			}
			// An inner list's items may carry parameters; DBSC's do not
			// use them.
			if _, err := p.params(); err != nil {
				return m, err
			}
			m.items = append(m.items, item)
			if p.i < len(p.s) && p.s[p.i] != ' ' && p.s[p.i] != ')' {
				return m, errSyntax
			}
		}
	} else {
		item, err := p.bareItem()
		if err != nil {
			return m, err
		}
		m.items = []bareItem{item}
	}
	params, err := p.params()
	m.params = params
	return m, err
}

func (p *sfParser) params() ([]param, error) {
	var params []param
	for p.i < len(p.s) && p.s[p.i] == ';' {
		p.i++
		for p.i < len(p.s) && p.s[p.i] == ' ' {
			p.i++
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		value := bareItem{kind: kindOther, text: "?1"} // a key alone is boolean true
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			if value, err = p.bareItem(); err != nil {
				return nil, err
			}
		}
		params = append(params, param{key, value})
	}
	return params, nil
}

func (p *sfParser) key() (string, error) {
	start := p.i
	if p.i == len(p.s) || !(isLower(p.s[p.i]) || p.s[p.i] == '*') {
		return "", errors.New("a parameter key must start with a-z or *")
	}
	for p.i < len(p.s) && (isLower(p.s[p.i]) || isDigit(p.s[p.i]) || strings.IndexByte("_-.*", p.s[p.i]) >= 0) {
		p.i++
	}
	return p.s[start:p.i], nil
}

func (p *sfParser) bareItem() (bareItem, error) {
	if p.i == len(p.s) {
		return bareItem{}, errors.New("missing item")
	}
	switch c := p.s[p.i]; {
	case c == '"':
		s, err := p.string()
		return bareItem{kindString, s}, err
	case isAlpha(c) || c == '*':
		start := p.i
		for p.i < len(p.s) && (isTchar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return bareItem{kindToken, p.s[start:p.i]}, nil
	case c == '-' || isDigit(c):
		return bareItem{kind: kindOther}, p.number()
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			p.i += 2
			return bareItem{kind: kindOther}, nil
		}
		return bareItem{}, errors.New("bad boolean")
	case c == ':':
		end := strings.IndexByte(p.s[p.i+1:], ':')
		if end < 0 {
			return bareItem{}, errors.New("unterminated byte sequence")
		}
		for _, b := range []byte(p.s[p.i+1 : p.i+1+end]) {
			if !(isAlpha(b) || isDigit(b) || b == '+' || b == '/' || b == '=') {
				return bareItem{}, errors.New("bad byte sequence")
			}
		}
		p.i += end + 2
		return bareItem{kind: kindOther}, nil
	}
	return bareItem{}, errSyntax
}

// string reads an sf-string: printable ASCII, with \" and \\ the only
// escapes.
func (p *sfParser) string() (string, error) {
	p.i++ // the opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.i == len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", errors.New(`a string escapes only " and \`)
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c == '"':
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", errors.New("a string holds only printable ASCII")
		default:
			b.WriteByte(c)
		}
	}
	return "", errors.New("unterminated string")
}

// number reads an sf-integer (up to 15 digits) or sf-decimal (up to 12
// digits, a dot, 1 to 3 digits).
func (p *sfParser) number() error {
	if p.s[p.i] == '-' {
		p.i++
	}
	start := p.i
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		p.i++
	}
	whole := p.i - start
	if whole == 0 || whole > 15 {
		return errors.New("bad number")
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		fracStart := p.i
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
		if frac := p.i - fracStart; whole > 12 || frac == 0 || frac > 3 {
			return errors.New("bad decimal")
		}
	}
	return nil
}

func isToken(s string) bool {
	if s == "" || !(isAlpha(s[0]) || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !(isTchar(s[i]) || s[i] == ':' || s[i] == '/') {
			return false
		}
	}
	return true
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isTchar reports an RFC 9110 token character.
func isTchar(c byte) bool {
	return isAlpha(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
