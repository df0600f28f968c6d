package vault_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// frameworkRoutes are answers of the shapes real frameworks give, under
// /api/fw/: a login whose answer is labelled as Go or Express label it,
// echoes of the caller's token under every label, tokens in cookies and
// redirects, ranges, early hints, odd encodings and charsets.
func (b *jwtBackend) frameworkRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/fw/login/{style}", b.frameworkLogin)
	mux.HandleFunc("GET /api/fw/echo/{style}", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := b.caller(w, r)
		if ok {
			echoToken(w, r.PathValue("style"), tok)
		}
	})
	// A fresh token for the caller in a header, as backends that renew
	// the token on every call do: the vault does not know it yet.
	mux.HandleFunc("GET /api/fw/renew/{style}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := b.caller(w, r); !ok {
			return
		}
		fresh := b.sign(b.current(r))
		switch r.PathValue("style") {
		case "express-cookie": // res.cookie("auth", {token}): "j:" and JSON, percent-encoded
			w.Header().Add("Set-Cookie", "auth="+url.PathEscape(`j:{"token":"`+fresh+`"}`)+"; Path=/; HttpOnly")
		case "redirect":
			w.Header().Set("Location", "/cb?auth=Bearer%20"+fresh)
			w.WriteHeader(http.StatusFound)
			return
		case "x-next":
			w.Header().Set("X-Next", "/welcome?auth=Bearer%20"+fresh)
		}
		writeJSON(w, 200, map[string]any{"ok": true})
	})
	// A download of the caller's own data, served by http.ServeContent,
	// which answers Range and If-Range (also several ranges at once).
	mux.HandleFunc("GET /api/fw/export", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := b.caller(w, r)
		if !ok {
			return
		}
		body := "export of your account\ntoken " + tok + "\n" + strings.Repeat("row\n", 50)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.ServeContent(w, r, "export.txt", time.Unix(1700000000, 0), strings.NewReader(body))
	})
	// A backend that answers 206 whether asked or not.
	mux.HandleFunc("GET /api/fw/partial", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := b.caller(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", len(tok)))
		w.WriteHeader(http.StatusPartialContent)
		fmt.Fprint(w, tok[:10])
	})
	// An event stream whose first event carries the token, split between
	// two writes; the second event waits for the test's gate.
	mux.HandleFunc("GET /api/fw/events", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := b.caller(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		fmt.Fprintf(w, "data: one %s", tok[:len(tok)/2])
		rc.Flush()
		fmt.Fprintf(w, "%s\n\n", tok[len(tok)/2:])
		rc.Flush()
		if gate, ok := eventGates.Load(b); ok {
			select {
			case <-gate.(chan struct{}):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "data: two\n\n")
		rc.Flush()
	})
	// 103 Early Hints naming a script URL with the token, then the page.
	mux.HandleFunc("GET /api/fw/hints", func(w http.ResponseWriter, r *http.Request) {
		tok, ok := b.caller(w, r)
		if !ok {
			return
		}
		w.Header().Set("Link", "</app.js?t="+tok+">; rel=preload; as=script")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		writeJSON(w, 200, map[string]any{"ok": true})
	})
}

// eventGates holds, by backend, the channel its event stream waits on
// before its second event.
var eventGates sync.Map

// caller returns the token the call carried, or answers 401.
func (b *jwtBackend) caller(w http.ResponseWriter, r *http.Request) (string, bool) {
	if b.current(r) == nil {
		writeJSON(w, 401, map[string]any{"errors": map[string]any{"body": []string{"unauthorized"}}})
		return "", false
	}
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Token "), true
}

// frameworkLogin checks the password as login does and answers in a style.
func (b *jwtBackend) frameworkLogin(w http.ResponseWriter, r *http.Request) {
	u := b.authenticate(w, r)
	if u == nil {
		return
	}
	tok := b.sign(u)
	if r.PathValue("style") == "spaced-cookie" {
		// A header written with spaces ({ "alg": ... }): the token starts
		// "eyAi", not "eyJ", so only its literal value finds it.
		tok = b.signWithHeader(u, `{ "alg": "HS256", "typ": "JWT" }`)
		w.Header().Add("Set-Cookie", "auth="+tok+"; Path=/; HttpOnly")
	}
	body, _ := json.Marshal(map[string]any{"user": map[string]any{"email": u.Email, "username": u.Username, "token": tok}})
	switch r.PathValue("style") {
	case "go-untyped": // a Go handler that sets no type: net/http sniffs text/plain
		w.Write(body)
	case "express-send": // Express's res.send(string)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(body)
	case "html-page": // a server-rendered page that hands the token to the SPA
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><script>localStorage.setItem(\"token\", %q); location = \"/\"</script>", tok)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}
}

// echoToken writes tok back the way one framework or another would.
func echoToken(w http.ResponseWriter, style, tok string) {
	flush := func() { http.NewResponseController(w).Flush() }
	h := w.Header()
	switch style {
	case "text-plain":
		h.Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "signed in with %s\n", tok)
	case "untyped": // no Content-Type at all (net/http would sniff one)
		h["Content-Type"] = nil
		fmt.Fprint(w, tok)
	case "text-json":
		h.Set("Content-Type", "text/json")
		fmt.Fprintf(w, `{"seen":%q}`, tok)
	case "ndjson":
		h.Set("Content-Type", "application/x-ndjson")
		fmt.Fprintf(w, "{\"n\":1,\"seen\":%q}\n{\"n\":2}\n", tok)
	case "two-types":
		h["Content-Type"] = []string{"text/plain", "application/json"}
		fmt.Fprintf(w, `{"seen":%q}`, tok)
	case "utf16":
		h.Set("Content-Type", "application/json; charset=utf-16")
		w.Write(utf16LE(fmt.Sprintf(`{"seen":%q}`, tok), false))
	case "bom16": // labelled UTF-8, but a byte-order mark says otherwise
		h.Set("Content-Type", "application/json; charset=utf-8")
		w.Write(utf16LE(fmt.Sprintf(`{"seen":%q}`, tok), true))
	case "gzip-twice-labelled": // Content-Encoding: identity, then gzip
		h.Set("Content-Type", "application/json")
		h["Content-Encoding"] = []string{"identity", "gzip"}
		zw := gzip.NewWriter(w)
		fmt.Fprintf(zw, `{"seen":%q}`, tok)
		zw.Close()
	case "gzip-text": // a gzip-compressed page
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		fmt.Fprintf(zw, "token %s\n", tok)
		zw.Close()
	case "html": // a page, written in pieces that split the token
		h.Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><p>Signed in.</p><script>window.t = \"")
		for i := 0; i < len(tok); i += 7 {
			fmt.Fprint(w, tok[i:min(i+7, len(tok))])
			flush()
		}
		fmt.Fprint(w, "\";</script>")
	}
}

// utf16LE encodes s in UTF-16LE, with a byte-order mark when bom.
func utf16LE(s string, bom bool) []byte {
	var out bytes.Buffer
	if bom {
		out.Write([]byte{0xFF, 0xFE})
	}
	for _, u := range utf16.Encode([]rune(s)) {
		out.WriteByte(byte(u))
		out.WriteByte(byte(u >> 8))
	}
	return out.Bytes()
}
