package vault_test

import (
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/vault"
)

const testJWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2J5dGVz"

// A token split between two upstream reads, at every point, is masked
// with as many bytes and counted once.
func TestStreamGuardMasksAcrossReads(t *testing.T) {
	opaque := "tok_opaque-0123456789abcdef"
	for _, tok := range []string{testJWT, opaque} {
		body := "data: " + tok + "\n\n"
		for cut := 0; cut <= len(body); cut++ {
			out, n, err := vault.MaskStream([][]byte{[]byte(body[:cut]), []byte(body[cut:])}, 7, []byte(tok))
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(body) || strings.Contains(string(out), tok) || !strings.Contains(string(out), "[removed by cloakroom]") || n != 1 {
				t.Fatalf("%s cut at %d: %q, %d masked", tok[:6], cut, out, n)
			}
		}
	}
}

// wouldBlock gives its chunks, then fails as a stream would block: a
// guard that asks for more before handing out what it has is caught.
type wouldBlock struct{ chunks []string }

var errWouldBlock = errors.New("the upstream has nothing more yet")

func (w *wouldBlock) Read(p []byte) (int, error) {
	if len(w.chunks) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, w.chunks[0])
	w.chunks = w.chunks[1:]
	return n, nil
}

func (*wouldBlock) Close() error { return nil }

// An event is handed on as soon as it is complete: only the bytes that
// may begin a token are held, never the end of an event.
func TestStreamGuardFlowsEventByEvent(t *testing.T) {
	for _, c := range []struct{ chunk, flows string }{
		{"data: hello\n\n", "data: hello\n\n"},
		{"data: " + testJWT + "\n\n", "data: [removed by cloakroom]"},
		{"data: x\n\ndata: e", "data: x\n\ndata: "},            // "e" may begin a JWT
		{"data: x\n\ndata: ey", "data: x\n\ndata: "},           // so may "ey"
		{"data: x\n\ndata: eyJhbGciOi", "data: x\n\ndata: "},   // an open candidate
		{"data: tok_opaque-01", "data: "},                      // the token's first bytes
		{"data: eyJhbGciOiJIUzI1NiJ9.eyJzdWIi.sig", "data: ["}, // a JWT: masked as it comes
	} {
		g := vault.NewStreamGuard(&wouldBlock{chunks: []string{c.chunk}}, []byte(testJWT), []byte("tok_opaque-0123456789abcdef"))
		var got []byte
		buf := make([]byte, 5)
		for {
			n, err := g.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				if !errors.Is(err, errWouldBlock) {
					t.Fatal(err)
				}
				break
			}
		}
		if !strings.HasPrefix(string(got), c.flows) || strings.Contains(string(got), "eyJ") || strings.Contains(string(got), "tok_") {
			t.Fatalf("%q: handed on %q, want it to start %q", c.chunk, got, c.flows)
		}
		if c.chunk == "data: hello\n\n" && string(got) != c.chunk {
			t.Fatalf("a plain event was held: %q", got)
		}
		g.Close()
	}
}

// A JWT glued to base64url text or after an escape ("%22eyJ", "%20eyJ")
// is found all the same, in a stream and in a header.
func TestJWTShapeWhereverItStarts(t *testing.T) {
	for _, s := range []string{"%22" + testJWT, "%20" + testJWT, "abc" + testJWT, "x=" + testJWT + ".more"} {
		if !vault.HasJWTShape(s) {
			t.Fatalf("missed in %q", s)
		}
		out, n, err := vault.MaskStream([][]byte{[]byte(s)}, 64)
		if err != nil || n != 1 || strings.Contains(string(out), "eyJ") {
			t.Fatalf("stream %q: %q %d %v", s, out, n, err)
		}
	}
}

// Header values: a token is found as it is and in its decoded forms; the
// headers of an ordinary answer are not taken for one.
func TestCarriesTokenDecodedForms(t *testing.T) {
	opaque := "tok_opaque-0123456789abcdef"
	known := []string{opaque}
	for _, v := range []string{
		"auth=j:%7B%22token%22:%22" + testJWT + "%22%7D; Path=/; HttpOnly",
		"/cb?auth=Bearer%20" + testJWT,
		"/cb?auth=Bearer%2520" + testJWT,
		`{"t":"\u0065\u0079\u004a` + testJWT[3:] + `"}`,
		"%5Cu0065yJ" + testJWT[3:],
		"session=" + base64.StdEncoding.EncodeToString([]byte(`{"token":"`+testJWT+`"}`)) + "; Path=/",
		"session=" + base64.RawURLEncoding.EncodeToString([]byte(`{"token":"`+opaque+`"}`)),
		"x=%74%6f%6b%5f%6f%70%61%71%75%65-0123456789abcdef",
		opaque,
	} {
		if !vault.CarriesToken(v, known) {
			t.Errorf("missed in %q", v)
		}
	}
	for _, v := range []string{
		"application/json; charset=utf-8", "Mon, 07 Dec 2026 08:00:00 GMT", "no-store", "128",
		`W/"5f3a9c2b1e8d7f6a4c3b2a1908f7e6d5"`,
		"sid=" + base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")) + "; Path=/; HttpOnly; Secure",
		"</app.js>; rel=preload; as=script", "/welcome?next=%2Fhome%3Fa%3D1",
	} {
		if vault.CarriesToken(v, known) {
			t.Errorf("%q taken for a token", v)
		}
	}
}

// The guard stops at an upstream error without handing on what it held:
// a token's first bytes never go out alone.
func TestStreamGuardHoldsOnError(t *testing.T) {
	g := vault.NewStreamGuard(&wouldBlock{chunks: []string{"ok " + testJWT[:30]}}, []byte(testJWT))
	got, err := io.ReadAll(g)
	if !errors.Is(err, errWouldBlock) || string(got) != "ok " {
		t.Fatalf("%q %v", got, err)
	}
}
