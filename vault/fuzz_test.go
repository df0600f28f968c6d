package vault_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/internal/jsonscan"
	"github.com/cloakroom/cloakroom/vault"
)

// FuzzParseCapture: the flag parser accepts only what round-trips, and
// every refusal wraps ErrInvalidConfig.
func FuzzParseCapture(f *testing.F) {
	for _, s := range []string{"POST /api/users/login user.token", "PUT /api/{id} data.0.jwt", "GET /x a", "POST /x", "", "POST /a?b c", "POST /{a}/{a} t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := vault.ParseCapture(s)
		if err != nil {
			if !errors.Is(err, vault.ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if !strings.HasPrefix(c.Path, "/") || c.Method == "" || len(c.Field) == 0 {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		again, err := vault.ParseCapture(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("round trip of %q: %v %q", c.String(), err, again.String())
		}
	})
}

// FuzzRewriteBody: on any body, the walker never panics; on valid JSON,
// replacing or dropping the configured fields keeps it valid JSON and
// removes those strings, and the leak guard leaves neither the literal
// token nor a JWT-shaped string, in the bytes or in the strings they
// decode to, and keeps valid JSON valid.
func FuzzRewriteBody(f *testing.F) {
	f.Add([]byte(`{"user":{"email":"a@b","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}}`), "tokVAULTED1")
	f.Add([]byte(`{"user":{"token":"tokVAULTED1"},"list":[1,"x",{"token":null}]}`), "tokVAULTED1")
	f.Add([]byte(`[{"user":{"token":"a"}},{"user":{"token":"b"}}]`), "tok")
	f.Add([]byte(`{"a":"\u0065yJ\"x","user":{"token":"\"quoted\"","x":1}}`), "tokZZZZZZ")
	f.Add([]byte(`{"a":"\u0065yJhbGciOiJIUzI1NiJ9\u002eeyJzdWIiOiIxIn0.c2ln","b":["tok\u0056AULTED1","%22eyJhbGciOiJ.eyJzdWIiOiIx."]}`), "tokVAULTED1")
	p, err := vault.ParseJSONPath("user.token")
	if err != nil {
		f.Fatal(err)
	}
	wanted := []vault.JSONPath{p}
	f.Fuzz(func(t *testing.T, body []byte, literal string) {
		_, err := vault.FindStrings(body, wanted)
		valid := json.Valid(body)
		if err != nil {
			// Refused as uncheckable: nested deeper than 512 levels, or
			// user.token given twice.
			if valid && !errors.Is(err, vault.ErrUncheckable) {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		if valid {
			_, hadString := tokenAt(body)
			replaced, dropped := rewrites(t, body, wanted)
			if !json.Valid(replaced) || !json.Valid(dropped) {
				t.Fatalf("rewrite of %q gave invalid JSON %q / %q", body, replaced, dropped)
			}
			if v, ok := tokenAt(replaced); hadString && (!ok || v != "P") {
				t.Fatalf("replace left %q in %q", v, replaced)
			}
			if v, ok := tokenAt(dropped); hadString && ok {
				t.Fatalf("drop left %q in %q", v, dropped)
			}
		}
		// Real tokens are base64url and dots; "tok" cannot occur outside a
		// JSON string.
		if len(literal) < 8 || !strings.HasPrefix(literal, "tok") || strings.ContainsFunc(literal, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			literal = "tokLITERAL1"
		}
		out, n := vault.GuardLeaks(body, []byte(literal))
		if bytes.Contains(out, []byte(literal)) {
			t.Fatalf("literal token left in %q", out)
		}
		if again, m := vault.GuardLeaks(out, []byte(literal)); m != 0 || !bytes.Equal(again, out) {
			t.Fatalf("guard output %q still holds %d tokens", out, m)
		}
		if n == 0 && !bytes.Equal(out, body) {
			t.Fatal("body changed without a leak counted")
		}
		if valid && !json.Valid(out) {
			t.Fatalf("guard broke valid JSON: %q -> %q", body, out)
		}
		if valid {
			// What the browser's JSON.parse makes of it holds none either.
			for _, s := range jsonStrings(t, string(out)) {
				if vault.HoldsToken(s, literal) {
					t.Fatalf("guard output %q decodes to %q", out, s)
				}
			}
		}
	})
}

func rewrites(t *testing.T, body []byte, wanted []vault.JSONPath) (replaced, dropped []byte) {
	var err error
	if replaced, err = vault.ReplacePaths(body, wanted, `"P"`); err != nil {
		t.Fatal(err)
	}
	dropped, err = vault.DropPaths(body, wanted)
	if err != nil {
		t.Fatal(err)
	}
	return replaced, dropped
}

// tokenAt returns the string at user.token, if there is one.
func tokenAt(body []byte) (string, bool) {
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		return "", false
	}
	user, _ := v["user"].(map[string]any)
	tok, ok := user["token"].(string)
	return tok, ok
}

// FuzzUserFromToken: whatever the upstream answers, the user taken from
// it is a plain, bounded value or an ErrNoUser.
func FuzzUserFromToken(f *testing.F) {
	b := newJWTBackend()
	f.Add(b.sign(&backendUser{ID: 7, Username: "u"}), "id")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiIgeCJ9.", "sub")
	f.Add("a.e30.b", "sub")
	f.Fuzz(func(t *testing.T, token, claim string) {
		user, err := vault.UserFromToken(token, claim)
		if err != nil {
			if !errors.Is(err, vault.ErrNoUser) {
				t.Fatalf("error %v does not wrap ErrNoUser", err)
			}
			return
		}
		if user == "" || len(user) > 256 || strings.TrimSpace(user) != user || strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted user %q", user)
		}
	})
}

// stripNames is the route default: access_token alone.
var stripNames = []string{"access_token"}

// FuzzParamNames: whatever name a query or form parameter has, if PHP
// (older or newer), Rack 2, Rack 3 or qs (with allowDots or without)
// reads it as access_token (or an array or hash under that name), the
// vault strips it, keeping every other parameter byte for byte. The
// readers here are written after those parsers' own code, apart from the
// vault's.
func FuzzParamNames(f *testing.F) {
	for _, s := range tokenNameVariants {
		f.Add(s)
	}
	for _, s := range []string{"title", "access_tokens", "my_access_token", "access[token]", "%zz", "a.b[c", "[]access_token"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if strings.ContainsAny(name, "&;=") {
			return // not one name
		}
		stripped := vault.NameStripped(name, stripNames...)
		for reader, got := range backendNames(name) {
			if strings.EqualFold(got, "access_token") && !stripped {
				t.Fatalf("%s reads %q as %q, which the vault keeps", reader, name, got)
			}
		}
		q := "a=1&" + name + "=x&b=%zz"
		out, _ := vault.StripValues(q, stripNames...)
		if want := "a=1&b=%zz"; stripped && out != want || !stripped && out != q {
			t.Fatalf("strip %q = %q (stripped: %v)", q, out, stripped)
		}
		if stripped && !strings.Contains(strings.ToLower(name), "access") && !strings.ContainsAny(name, "%") {
			t.Fatalf("%q stripped", name)
		}
	})
}

var (
	rack2Name = regexp.MustCompile(`^[\[\]]*([^\[\]]+)\]*`)
	qsDots    = regexp.MustCompile(`\.([^.\[]+)`)
	qsSegment = regexp.MustCompile(`\[[^\[\]]*\]`)
)

// backendNames is the top-level name each reader gives a raw (encoded)
// parameter name.
func backendNames(raw string) map[string]string {
	out := map[string]string{}
	php := phpURLDecode(raw)
	out["PHP 7"], out["PHP 8"] = phpRegister(php, false), phpRegister(php, true)
	// Rack refuses a name with a malformed escape (the request fails).
	if dec, err := url.QueryUnescape(raw); err == nil {
		if m := rack2Name.FindStringSubmatch(dec); m != nil {
			out["Rack 2"] = m[1]
		}
		out["Rack 3"] = dec
		if len(dec) > 1 {
			if i := strings.IndexByte(dec[1:], '['); i >= 0 {
				out["Rack 3"] = dec[:i+1]
			}
		}
	}
	// qs: decodeURIComponent, or the name with '+' a space if it throws.
	qs := strings.ReplaceAll(raw, "+", " ")
	if dec, err := url.PathUnescape(qs); err == nil && utf8.ValidString(dec) {
		qs = dec
	}
	out["qs"], out["qs allowDots"] = qsParent(qs), qsParent(qsDots.ReplaceAllString(qs, "[$1]"))
	return out
}

// qsParent is qs's parseKeys: the part before the first [...] segment,
// or, when that is empty, the first segment without its brackets.
func qsParent(key string) string {
	loc := qsSegment.FindStringIndex(key)
	if loc == nil {
		return key
	}
	if loc[0] > 0 {
		return key[:loc[0]]
	}
	return key[1 : loc[1]-1]
}

// phpURLDecode is PHP's php_url_decode.
func phpURLDecode(s string) string {
	b := []byte(s)
	out := b[:0:0]
	for i := 0; i < len(b); i++ {
		if b[i] == '+' {
			out = append(out, ' ')
		} else if b[i] == '%' && i+2 < len(b) && isHexDigit(b[i+1]) && isHexDigit(b[i+2]) {
			v, _ := strconv.ParseUint(string(b[i+1:i+3]), 16, 8)
			out = append(out, byte(v))
			i += 2
		} else {
			out = append(out, b[i])
		}
	}
	return string(out)
}

func isHexDigit(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }

// phpRegister is the name php_register_variable_ex registers var under:
// "" for none.
func phpRegister(v string, php8 bool) string {
	if i := strings.IndexByte(v, 0); i >= 0 {
		v = v[:i] // a C string
	}
	v = strings.TrimLeft(v, " ")
	b := []byte(v)
	p := 0
	for ; p < len(b); p++ {
		if b[p] == ' ' || b[p] == '.' {
			b[p] = '_'
		} else if b[p] == '[' {
			break
		}
	}
	if p == 0 {
		return ""
	}
	if p == len(b) {
		return string(b)
	}
	ip := p + 1
	indexStart := ip
	if ip < len(b) && strings.IndexByte(" \t\n\v\f\r", b[ip]) >= 0 {
		ip++
	}
	if ip < len(b) && b[ip] == ']' || strings.IndexByte(string(b[ip:]), ']') >= 0 {
		return string(b[:p]) // an array under the name before '['
	}
	b[p] = '_'
	if php8 {
		for q := indexStart; q < len(b); q++ {
			if b[q] == ' ' || b[q] == '.' || b[q] == '[' {
				b[q] = '_'
			}
		}
	}
	return string(b)
}

// FuzzStripJSONBody: a JSON request body comes out valid, holding no key,
// at any depth, that names a stripped parameter, and byte for byte as it
// came when it held none; a body that is not JSON is refused.
func FuzzStripJSONBody(f *testing.F) {
	for _, s := range []string{
		`{"title":"x","access_token":"t"}`, `{"user":{"bio":"x","acc\u0065ss_token":"t"}}`, `[{"access.token":1},{"a":[{"access_token[]":{"x":1}}]}]`,
		`{"access_token":1 , "access_token":2}`, ` "x" `, `{"a":1,}`, `{"user":{"access_token":"t", "b":2,"access_token":3}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := vault.StripJSON(body, stripNames...)
		valid := json.Valid(body)
		if err != nil {
			if valid && jsonscan.Valid(body) {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		if !valid {
			t.Fatalf("%q is no JSON, yet passed as %q", body, out)
		}
		var before, after any
		if json.Unmarshal(body, &before) != nil || json.Unmarshal(out, &after) != nil {
			t.Fatalf("%q stripped to invalid JSON %q", body, out)
		}
		if keyStripped(after) {
			t.Fatalf("%q stripped to %q, which still holds a token parameter", body, out)
		}
		if !keyStripped(before) && !bytes.Equal(out, body) {
			t.Fatalf("%q changed to %q with no token parameter in it", body, out)
		}
	})
}

// keyStripped reports whether a decoded JSON value holds, at any depth, a
// key naming a stripped parameter.
func keyStripped(v any) bool {
	switch v := v.(type) {
	case []any:
		return slices.ContainsFunc(v, keyStripped)
	case map[string]any:
		for k, e := range v {
			if vault.NameStripped(k, stripNames...) || keyStripped(e) {
				return true
			}
		}
	}
	return false
}

// FuzzStripMultipart: whatever multipart body the vault passes, Go's own
// multipart reader finds in it no part named as a stripped parameter, and
// reads it through if it read the body as it came.
func FuzzStripMultipart(f *testing.F) {
	for _, fields := range [][]string{{"title", "x", "access_token", "t"}, {"access.token", "t"}, {"a", "1", "[access_token]", "t", "b", "2"}} {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.SetBoundary("BOUNDARY")
		for i := 0; i+1 < len(fields); i += 2 {
			mw.WriteField(fields[i], fields[i+1])
		}
		mw.Close()
		f.Add(buf.Bytes(), "BOUNDARY")
	}
	f.Add([]byte("--b\r\nContent-ID: <access_token>\r\n\r\nt\r\n--b--\r\n"), "b")
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=a; filename=\"access_token\"\r\n\r\nt\r\n--b--"), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		contentType := mime.FormatMediaType("multipart/form-data", map[string]string{"boundary": boundary})
		if contentType == "" {
			return
		}
		out, err := vault.StripMultipart(body, contentType, stripNames...)
		if err != nil {
			return
		}
		if len(out) > len(body) {
			t.Fatalf("%q grew to %q", body, out)
		}
		inputRead := readParts(body, boundary, nil)
		if !readParts(out, boundary, func(p *multipart.Part) {
			if vault.NameStripped(p.FormName(), stripNames...) {
				t.Fatalf("%q passed as %q, with the part %q", body, out, p.FormName())
			}
		}) && inputRead {
			t.Fatalf("Go reads %q through, but not %q", body, out)
		}
	})
}

// readParts reads a multipart body with Go's reader, calling each on every
// part, and reports whether it read it through.
func readParts(body []byte, boundary string, each func(*multipart.Part)) bool {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		if each != nil {
			each(p)
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return false
		}
	}
}

// FuzzStreamGuard: however the upstream cuts a body and the client reads
// it, the guard gives the same bytes, as many as came in, with neither the
// literal token nor a JWT-shaped string left, changed only where it
// masked, and unchanged where there was nothing to mask.
func FuzzStreamGuard(f *testing.F) {
	f.Add([]byte("data: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln\n\n"), "tokLITERAL1", []byte{3, 9, 1})
	f.Add([]byte("<p>tokLITERAL1</p> eyJ eyJaaaaaaaa.bbbbbbbb eyJaaaaaaaa.bbbbbbbbb.c.d"), "tokLITERAL1", []byte{1, 1, 2, 40})
	f.Add([]byte("%22eyJhbGciOiJIUzI1NiJ9.eyJzdWIi.x eyeyJhbGciOiJIUzI1.eyJzdWIiOiIx."), "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi.x", []byte{5})
	f.Fuzz(func(t *testing.T, body []byte, literal string, cuts []byte) {
		c2 := func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}
		// Real tokens are base64url and dots, a JWT or an opaque string.
		if len(literal) < 8 || strings.ContainsFunc(literal, c2) || !strings.HasPrefix(literal, "tok") && !vault.JWTShapeAt(literal, 0) {
			literal = "tokLITERAL1"
		}
		lit := []byte(literal)
		whole, n, err := vault.MaskStream([][]byte{body}, len(body)+1, lit)
		if err != nil {
			t.Fatal(err)
		}
		var chunks [][]byte
		rest, readSize := body, 1
		for i, c := range cuts {
			if i == 0 {
				readSize = int(c)%64 + 1
				continue
			}
			k := min(int(c)%32+1, len(rest))
			chunks, rest = append(chunks, rest[:k]), rest[k:]
		}
		chunks = append(chunks, rest)
		cut, m, err := vault.MaskStream(chunks, readSize, lit)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(whole, cut) || n != m {
			t.Fatalf("cut %v read %d: %q (%d) against %q (%d)", len(chunks), readSize, cut, m, whole, n)
		}
		if len(whole) != len(body) || bytes.Contains(whole, lit) || vault.HasJWTShape(string(whole)) {
			t.Fatalf("guard output %q of %q", whole, body)
		}
		for i := range whole {
			if whole[i] != body[i] && whole[i] != '*' && !strings.Contains(vault.Redacted, string(whole[i])) {
				t.Fatalf("byte %d changed to %q", i, whole[i])
			}
		}
		if clean := !bytes.Contains(body, lit) && !vault.HasJWTShape(string(body)); clean != (n == 0) || clean != bytes.Equal(whole, body) {
			t.Fatalf("clean %t, %d masked, changed %t: %q", clean, n, !bytes.Equal(whole, body), body)
		}
	})
}

// FuzzCarriesToken: the header check finds exactly the JWT-shaped
// strings the reference finds, and a token still once percent-encoded
// byte by byte, JSON-escaped, or base64-encoded.
func FuzzCarriesToken(f *testing.F) {
	f.Add("auth=j:%7B%22token%22:%22eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln%22%7D", "tokLITERAL1")
	f.Add("/cb?auth=Bearer%20eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", "tokLITERAL1")
	f.Add("eyJeyJeyJaaaaaaa.eyJbbbbbbbb.", "tokLITERAL1")
	f.Fuzz(func(t *testing.T, v, literal string) {
		if len(literal) < 8 || !strings.HasPrefix(literal, "tok") {
			literal = "tokLITERAL1"
		}
		known := []string{literal}
		shaped := false
		for i := range v {
			shaped = shaped || vault.JWTShapeAt(v, i)
		}
		if vault.HasJWTShape(v) != shaped {
			t.Fatalf("HasJWTShape(%q) = %t, reference %t", v, !shaped, shaped)
		}
		if !shaped && !strings.Contains(v, literal) {
			return
		}
		var pct, esc strings.Builder
		for i := 0; i < len(v); i++ {
			fmt.Fprintf(&pct, "%%%02X", v[i])
		}
		for _, r := range v {
			fmt.Fprintf(&esc, `\u%04x`, r)
		}
		forms := []string{v, pct.String(), url.QueryEscape(v), esc.String()}
		if len(v) >= 15 { // base64 runs shorter than a token's are not decoded
			forms = append(forms, "c="+base64.StdEncoding.EncodeToString([]byte(v)), "c="+base64.RawURLEncoding.EncodeToString([]byte(v)))
		}
		for _, enc := range forms {
			if !vault.CarriesToken(enc, known) {
				t.Fatalf("missed %q in %q", v, enc)
			}
		}
	})
}
