package vault_test

import (
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
