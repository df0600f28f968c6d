package vault

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// literalMatcher finds one known token in bytes given piece by piece
// (Knuth-Morris-Pratt): state is how many of its first bytes end what was
// scanned, which is exactly what must be held back.
type literalMatcher struct {
	pat   []byte
	fail  []int32 // fail[k]: the longest proper border of pat[:k+1]
	state int
}

func newLiteralMatcher(pat []byte) literalMatcher {
	fail := make([]int32, len(pat))
	for i, k := 1, int32(0); i < len(pat); i++ {
		for k > 0 && pat[i] != pat[k] {
			k = fail[k-1]
		}
		if pat[i] == pat[k] {
			k++
		}
		fail[i] = k
	}
	return literalMatcher{pat: pat, fail: fail}
}

// scan advances over b[from:end] and appends to spans the range of every
// occurrence. Outside a partial match it jumps to the next occurrence of
// the token's first bytes, so text without them costs one bytes.Index.
func (m *literalMatcher) scan(b []byte, from, end int, spans []span) []span {
	pat := m.pat
	lead := pat[:min(len(pat), len(jwtStart))]
	i := from
	for i < end {
		if m.state == 0 {
			k := bytes.Index(b[i:end], lead)
			if k < 0 {
				// The last bytes may begin the token.
				i = max(i, end-(len(lead)-1))
				for ; i < end; i++ {
					m.step(b[i])
				}
				return spans
			}
			i += k + len(lead)
			m.state = len(lead)
		} else {
			m.step(b[i])
			i++
		}
		if m.state == len(pat) {
			spans = append(spans, span{start: i - len(pat), end: i, origin: i - len(pat)})
			m.state = int(m.fail[len(pat)-1])
		}
	}
	return spans
}

func (m *literalMatcher) step(c byte) {
	k := int32(m.state)
	for k > 0 && m.pat[k] != c {
		k = m.fail[k-1]
	}
	if m.pat[k] == c {
		k++
	}
	m.state = int(k)
}

// span is a masked range of the buffer; origin is where its token starts,
// so that a span masked in several pieces reads as one.
type span struct{ start, end, origin int }

// tokenMasker masks the known tokens and every JWT-shaped string in a byte
// stream, each with as many bytes (so lengths stay true), holding back only
// what may still turn out to be one: the bytes matching a token's first
// bytes, and an open JWT candidate (jwtScanner). Text that ends an event
// ("\n\n") is held by neither, so a stream flows event by event.
type tokenMasker struct {
	buf   []byte // bytes not yet taken; buf[:ready] is final
	ready int
	lits  []literalMatcher
	jwt   jwtScanner
	pos   int    // the JWT scan's position
	spans []span // masks not wholly applied yet
	// jwtSpan is the index in spans of the JWT-shaped run being masked,
	// -1 for none.
	jwtSpan int
	// litsAreJWTs: every literal is JWT-shaped itself, so the JWT scan
	// finds each of its occurrences and only those count.
	litsAreJWTs bool
	count       int
}

func newTokenMasker(literals [][]byte) tokenMasker {
	m := tokenMasker{jwt: newJWTScanner(), jwtSpan: -1, litsAreJWTs: true}
	for _, l := range literals {
		if len(l) == 0 {
			continue
		}
		m.lits = append(m.lits, newLiteralMatcher(l))
		if len(l) < len(jwtStart) || !bytes.HasPrefix(l, jwtStart) || jwtEnd(l, 0) < 0 {
			m.litsAreJWTs = false
		}
	}
	return m
}

// fed scans the n bytes just appended to buf and makes final what can no
// longer be part of a match.
func (m *tokenMasker) fed(n int) {
	end := len(m.buf)
	from := end - n
	for k := range m.lits {
		before := len(m.spans)
		m.spans = m.lits[k].scan(m.buf, from, end, m.spans)
		if !m.litsAreJWTs {
			m.count += len(m.spans) - before
		}
	}
	for m.pos < end {
		var ev int
		m.pos, ev = scanJWT(&m.jwt, m.buf, m.pos, end)
		switch ev {
		case jwtFound:
			m.count++
			m.jwtSpan = len(m.spans)
			m.spans = append(m.spans, span{start: m.jwt.start, end: m.pos, origin: m.jwt.start})
		case jwtEnded:
			m.spans[m.jwtSpan].end = m.pos
			m.jwtSpan = -1
		}
	}
	if m.jwtSpan >= 0 {
		m.spans[m.jwtSpan].end = end
	}
	hold := m.jwt.holdFrom(end)
	for k := range m.lits {
		hold = min(hold, end-m.lits[k].state)
	}
	m.release(hold)
}

// finish makes everything final at the end of the stream: an open
// candidate was not a JWT, a partial token not the token.
func (m *tokenMasker) finish() {
	m.release(len(m.buf))
}

// release masks buf[ready:upTo] where spans cover it and makes it final.
func (m *tokenMasker) release(upTo int) {
	if upTo <= m.ready {
		return
	}
	kept := m.spans[:0]
	for k, s := range m.spans {
		if a, e := max(s.start, m.ready), min(s.end, upTo); a < e {
			mask(m.buf[a:e], a-s.origin)
		}
		if s.end > upTo || k == m.jwtSpan {
			if k == m.jwtSpan {
				m.jwtSpan = len(kept)
			}
			kept = append(kept, s)
		}
	}
	m.spans = kept
	m.ready = upTo
}

// mask overwrites b, which starts off bytes into a token, with the same
// bytes of "[removed by cloakroom]" followed by '*'. No 'J' and no dot:
// masking never makes a new JWT-shaped string with what surrounds it.
func mask(b []byte, off int) {
	for k := range b {
		if o := off + k; o < len(redacted) {
			b[k] = redacted[o]
		} else {
			b[k] = '*'
		}
	}
}

// discard drops the first n bytes of buf, all final.
func (m *tokenMasker) discard(n int) {
	if n == 0 {
		return
	}
	m.buf = m.buf[:copy(m.buf, m.buf[n:])]
	m.ready -= n
	m.pos -= n
	if m.jwt.cand >= 0 {
		m.jwt.cand -= n
	}
	m.jwt.start -= n
	for k := range m.spans {
		m.spans[k].start -= n
		m.spans[k].end -= n
		m.spans[k].origin -= n
	}
}

// streamRead is the least room the guard reads into.
const streamRead = 4 << 10

// streamBufs recycles the guards' buffers.
var streamBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

var errGuardClosed = errors.New("vault: read after close")

// streamGuard is a response body checked as it is read: the known tokens
// and JWT-shaped strings are masked (tokenMasker). A read error of the
// upstream ends it without what was held back.
type streamGuard struct {
	src   io.Reader
	close io.Closer
	m     tokenMasker
	pool  *[]byte
	out   int   // bytes of buf[:ready] already read
	err   error // the upstream's, returned once the final bytes are read
	atEOF func()
	// closed is called once with the count of masked strings.
	closed func(masked int)
}

// newStreamGuard guards src (whose first bytes, already read, are
// prefix), closing closer when done.
func newStreamGuard(prefix []byte, src io.Reader, closer io.Closer, literals [][]byte) *streamGuard {
	g := &streamGuard{src: src, close: closer, m: newTokenMasker(literals)}
	g.pool = streamBufs.Get().(*[]byte)
	g.m.buf = (*g.pool)[:0]
	if len(prefix) > 0 {
		g.m.buf = append(g.m.buf, prefix...)
		g.m.fed(len(prefix))
	}
	return g
}

func (g *streamGuard) Read(p []byte) (int, error) {
	for {
		m := &g.m
		if g.out < m.ready {
			n := copy(p, m.buf[g.out:m.ready])
			g.out += n
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		if m.buf == nil {
			return 0, errGuardClosed
		}
		if cap(m.buf)-len(m.buf) < streamRead {
			// Read-out bytes go first; the buffer doubles only when what
			// is held fills half of it, so copying stays linear.
			m.discard(g.out)
			g.out = 0
			if cap(m.buf)-len(m.buf) < max(streamRead, cap(m.buf)/2) {
				m.buf = append(make([]byte, 0, 2*cap(m.buf)+streamRead), m.buf...)
			}
		}
		n, err := g.src.Read(m.buf[len(m.buf):cap(m.buf)])
		m.buf = m.buf[:len(m.buf)+n]
		m.fed(n)
		if err != nil {
			if err == io.EOF {
				m.finish()
				if g.atEOF != nil {
					g.atEOF()
				}
			}
			g.err = err
		}
	}
}

func (g *streamGuard) Close() error {
	if g.m.buf == nil {
		return nil
	}
	err := g.close.Close()
	if cap(g.m.buf) == cap(*g.pool) {
		*g.pool = g.m.buf[:0]
		streamBufs.Put(g.pool)
	}
	g.m.buf = nil
	if g.closed != nil {
		g.closed(g.m.count)
	}
	return err
}
