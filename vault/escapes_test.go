package vault_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/vault"
)

// serveRaw answers with the body a test put in b.raw, as JSON.
func (b *jwtBackend) serveRaw(w http.ResponseWriter, r *http.Request) {
	body := ""
	if p := b.raw.Load(); p != nil {
		body = *p
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(body))
}

// escapeJSON writes every character of s as a \u escape.
func escapeJSON(s string) string {
	var b strings.Builder
	for _, c := range s {
		fmt.Fprintf(&b, `\u%04x`, c)
	}
	return b.String()
}

// jsonStrings lists every string in a JSON document, keys included.
func jsonStrings(t *testing.T, body string) []string {
	t.Helper()
	var v any
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON (%v): %q", err, body)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				out = append(out, k)
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// TestEscapedTokensInJSONAreCaught: the vaulted token and other JWTs
// reach the browser neither written with JSON escapes, which JSON.parse
// decodes, nor right after a percent-encoded character.
func TestEscapedTokensInJSONAreCaught(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("gus")
	vaulted := st.backend.issued()[0]
	other := st.backend.sign(&backendUser{ID: 77})
	third := st.backend.sign(&backendUser{ID: 78})
	raw := `{"echo":"\u0065` + strings.ReplaceAll(vaulted[1:], ".", `\u002e`) + `",` +
		`"all":"` + escapeJSON(other) + `","` + escapeJSON(third) + `":1,` +
		`"url":"/next?q=%22` + third + `%22","spaced":"Bearer%20` + other + `"}`
	st.backend.raw.Store(&raw)
	before := st.leaks()
	r := b.do("GET", "/api/raw", "", "")
	if r.status != http.StatusOK {
		t.Fatalf("echo: %d %s", r.status, r.body)
	}
	st.assertNoToken("echo answer", r.body)
	for _, s := range jsonStrings(t, r.body) {
		st.assertNoToken("a decoded string of the echo answer", s)
	}
	if got := st.leaks() - before; got != 5 {
		t.Errorf("leaks counted: %v, want 5", got)
	}
}

// captureRaw adds the capture POST /api/raw user.token.
func captureRaw(r *vault.Route) {
	c, err := vault.ParseCapture("POST /api/raw user.token")
	if err != nil {
		panic(err)
	}
	r.Capture = append(r.Capture, c)
}

// TestDuplicateTokenKeysAreRefused: an answer with two values at a token
// path (JSON.parse keeps the last, the vault would have captured the
// first) is refused with 502, and no session starts.
func TestDuplicateTokenKeysAreRefused(t *testing.T) {
	st := newStack(t, stackOptions{route: captureRaw})
	first, last := st.backend.sign(&backendUser{ID: 5}), st.backend.sign(&backendUser{ID: 6})
	for _, raw := range []string{
		`{"user":{"token":"` + first + `","token":"` + last + `"}}`,
		`{"user":{"token":"` + first + `","t\u006fken":"` + last + `"}}`,
		`{"user":{"token":"` + first + `"},"user":{"token":"` + last + `"}}`,
	} {
		st.backend.raw.Store(&raw)
		b := st.browser()
		r := b.do("POST", "/api/raw", "application/json", `{}`)
		if r.status != http.StatusBadGateway || b.cookie != "" {
			t.Errorf("%s: %d, session %v", raw, r.status, b.cookie != "")
		}
		st.assertNoToken("refused answer", r.body)
	}
	// Duplicates off the token paths are the app's business.
	raw := `{"user":{"token":"` + first + `","a":1,"a":2},"b":[1],"b":[2]}`
	st.backend.raw.Store(&raw)
	b := st.browser()
	if r := b.do("POST", "/api/raw", "application/json", `{}`); r.status != http.StatusOK || b.cookie == "" {
		t.Errorf("duplicates elsewhere: %d %s", r.status, r.body)
	}
}

// TestDeepAnswersAreRefused: an answer nested deeper than the vault
// checks is refused with 502 rather than walked.
func TestDeepAnswersAreRefused(t *testing.T) {
	st := newStack(t, stackOptions{route: captureRaw})
	tok := st.backend.sign(&backendUser{ID: 5})
	nested := func(depth int) string {
		return `{"user":{"token":"` + tok + `"},"deep":` + strings.Repeat(`[`, depth) + strings.Repeat(`]`, depth) + `}`
	}
	for depth, want := range map[int]int{100: http.StatusOK, 10000: http.StatusBadGateway} {
		raw := nested(depth)
		st.backend.raw.Store(&raw)
		b := st.browser()
		r := b.do("POST", "/api/raw", "application/json", `{}`)
		if r.status != want || (b.cookie != "") != (want == http.StatusOK) {
			t.Errorf("depth %d: %d, session %v", depth, r.status, b.cookie != "")
		}
		st.assertNoToken(fmt.Sprint("answer at depth ", depth), r.body)
	}
}

// TestGuardLeaksDecodesJSONEscapes: the guard reads a body as JSON.parse
// will, escapes decoded, and removes what it finds there whole, leaving
// valid JSON.
func TestGuardLeaksDecodesJSONEscapes(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
	removed := vault.Redacted
	for _, c := range []struct {
		in, want string
		n        int
	}{
		{`{"a":"\u0065yJhbGciOiJIUzI1NiJ9\u002eeyJzdWIiOiIxIn0.c2lnbmF0dXJl"}`, `{"a":"` + removed + `"}`, 1},
		{`{"a":"x ` + escapeJSON(jwt) + ` y"}`, `{"a":"x ` + removed + ` y"}`, 1},
		{`{"` + escapeJSON(jwt) + `":1}`, `{"` + removed + `":1}`, 1},
		{`{"a":"%22` + jwt + `%22","b":"Bearer%20` + jwt + `"}`, `{"a":"%22` + removed + `%22","b":"Bearer%20` + removed + `"}`, 2},
		{`{"a":"\\` + jwt + `","b":"\ud83d\ude00` + jwt + `"}`, `{"a":"\\` + removed + `","b":"\ud83d\ude00` + removed + `"}`, 2},
		{`{"opaque":"tok\u002dvaulted\u002Dopaque-123","n":"\"tok-vaulted-opaque-123\""}`, `{"opaque":"` + removed + `","n":"\"` + removed + `\""}`, 2},
		{`{"a":"monk\u0065yJump.abc.def","b":"\\u0065yJ"}`, `{"a":"monk\u0065yJump.abc.def","b":"\\u0065yJ"}`, 0},
	} {
		got, n := vault.GuardLeaks([]byte(c.in), []byte("tok-vaulted-opaque-123"))
		if string(got) != c.want || n != c.n {
			t.Errorf("guard %s:\n got %s (%d)\nwant %s (%d)", c.in, got, n, c.want, c.n)
		}
	}
	for s, want := range map[string]bool{
		"next=%22" + jwt + "%22": true, "a%20" + jwt: true, `\x22` + jwt: true, "x" + jwt: false, "monkeyJump.abcdefgh.ijklmnop": false,
	} {
		if vault.HoldsToken(s, "") != want {
			t.Errorf("HoldsToken(%q) = %v", s, !want)
		}
	}
}
