package vault

import "io"

// Response-side internals the tests check directly.
var (
	CarriesToken = carriesToken
	HasJWTShape  = hasJWTShape
	Unescape     = unescape
)

// chunkReader returns one chunk per Read.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

func (*chunkReader) Close() error { return nil }

// MaskStream reads chunks, given one per upstream read, through a stream
// guard for literals, in reads of at most readSize bytes, and returns the
// body and the count of masked strings.
func MaskStream(chunks [][]byte, readSize int, literals ...[]byte) ([]byte, int, error) {
	src := &chunkReader{}
	for _, c := range chunks {
		src.chunks = append(src.chunks, append([]byte(nil), c...))
	}
	g := newStreamGuard(nil, src, src, literals)
	masked := -1
	g.closed = func(n int) { masked = n }
	var out []byte
	buf := make([]byte, max(readSize, 1))
	for {
		n, err := g.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, 0, err
		}
	}
	err := g.Close()
	return out, masked, err
}

// NewStreamGuard guards src for literals.
func NewStreamGuard(src io.ReadCloser, literals ...[]byte) io.ReadCloser {
	return newStreamGuard(nil, src, src, literals)
}

// JWTShapeAt reports whether a JWT-shaped string starts at s[i], whatever
// precedes it: the reference the scanner is checked against.
func JWTShapeAt(s string, i int) bool {
	return len(s)-i >= len(jwtStart) && s[i:i+len(jwtStart)] == string(jwtStart) && jwtEnd(s[i:], 0) >= 0
}
