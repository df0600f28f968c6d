// Package httpx holds the small HTTP rules several of cloakroom's packages
// apply alike (the gateway, the proxy, the vault, the OpenID client), so
// each is written once: which paths are clean and which lie under a prefix, how a cookie is
// taken out of a request, and which return_to targets are safe.
package httpx

import (
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// PathUnder reports whether the clean path p lies under prefix, on a
// segment boundary. A prefix ending in "/" holds every path below it and
// the path without the slash ("/api/" holds "/api/x" and "/api"); any other
// prefix holds itself and what lies below it ("/assets" holds "/assets"
// and "/assets/app.js", never "/assets2").
func PathUnder(p, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix) || len(p) == len(prefix)-1 && prefix[:len(p)] == p
	}
	return strings.HasPrefix(p, prefix) && (len(p) == len(prefix) || p[len(prefix)] == '/')
}

// RemoveCookie drops every cookie called name from the Cookie headers of h
// and keeps the others, joined in one header; a header left empty is
// removed. A pair is dropped when cloakroom.CookieValue reads it as the
// cookie: its name, the whitespace around it trimmed, is name (net/http
// reads names so too), so a lenient reader behind finds no copy.
func RemoveCookie(h http.Header, name string) {
	values := h["Cookie"]
	found := false
	for _, v := range values {
		if strings.Contains(v, name) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var b strings.Builder
	for _, v := range values {
		for part := range strings.SplitSeq(v, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			n, _, _ := strings.Cut(part, "=")
			if strings.TrimSpace(n) == name {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{b.String()}
}

// MaxReturnTo bounds return_to; a longer value falls back to "/".
const MaxReturnTo = 2048

// SafeReturnTo returns target when it is a path on this origin, and "/"
// otherwise, so that login never becomes an open redirect. A safe target is
// printable ASCII, starts with exactly one "/", has no backslash (browsers
// read "\" as "/", making "/\evil.com" a host), and stays so after percent-
// decoding (some servers and routers decode once more).
func SafeReturnTo(target string) string {
	if len(target) > MaxReturnTo || !localPath(target) {
		return "/"
	}
	decoded := target
	for range 4 {
		next, err := url.PathUnescape(decoded)
		if err != nil || !localPath(next) {
			return "/"
		}
		if next == decoded {
			return target
		}
		decoded = next
	}
	return "/" // still decoding after several rounds: nobody needs that
}

// localPath applies the rules of SafeReturnTo to one spelling.
func localPath(s string) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

// IsNavigation tells a top-level page load from a script's request, to
// answer a page or JSON. Fetch Metadata decides when present; otherwise an
// Accept header asking for HTML means a browser navigation, and
// X-Requested-With marks XHR.
func IsNavigation(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// CleanPath reports whether a decoded request path reads the same to every
// upstream: absolute, valid UTF-8 without lookalike dots and slashes
// (which NFKC turns into "." "/" "\"), no control characters, no
// backslashes, no double-encoded dots or separators, and no empty, "." or
// ".." segments, also when followed by ";" path parameters ("..;/" is ".."
// to Tomcat). Only the last segment may be empty (a trailing slash). This
// amounts to p == path.Clean(p) (keeping a trailing slash) plus the extra
// refusals, without allocating. The gateway's proxy and forward auth both
// judge paths by it, so a path one refuses the other does too.
func CleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c < 0x20 || c == 0x7f || c == '\\' || c == '%' && doubleEncoded(p[i:]) {
				return false
			}
			if c >= utf8.RuneSelf {
				r, size := utf8.DecodeRuneInString(p[i:])
				if r == utf8.RuneError || lookalikeSeparator(r) {
					return false // invalid or overlong UTF-8 ("%c0%ae"), or NFKC "." "/" "\"
				}
				i += size - 1
				continue
			}
			if c != '/' {
				continue
			}
		}
		seg := p[segStart:i]
		if seg == "" && i < len(p) {
			return false // "//"
		}
		if name, _, _ := strings.Cut(seg, ";"); name == "." || name == ".." {
			return false
		}
		segStart = i + 1
	}
	return true
}

// lookalikeSeparator reports whether r becomes ".", "/" or "\" under
// Unicode NFKC normalisation, which some upstream frameworks apply to paths.
func lookalikeSeparator(r rune) bool {
	switch r {
	case '\uff0e', '\uff0f', '\uff3c', '\ufe52', '\ufe68', '\u2024':
		return true
	}
	return false
}

// doubleEncoded reports whether s starts with a percent-encoding of a
// character that changes a path's meaning once an upstream decodes it again.
func doubleEncoded(s string) bool {
	if len(s) < 3 {
		return false
	}
	switch strings.ToLower(s[1:3]) {
	case "2e", "2f", "5c", "00", "3b", "25":
		return true
	}
	return false
}
