package gateway

import (
	"net/http"
	"net/url"
	"strings"
)

// maxReturnTo bounds return_to; a longer value falls back to "/".
const maxReturnTo = 2048

// safeReturnTo returns target when it is a path on this origin, and "/"
// otherwise, so that login never becomes an open redirect. A safe target is
// printable ASCII, starts with exactly one "/", has no backslash (browsers
// read "\" as "/", making "/\evil.com" a host), and stays so after percent-
// decoding (some servers and routers decode once more).
func safeReturnTo(target string) string {
	if len(target) > maxReturnTo || !localPath(target) {
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

// localPath applies the rules of safeReturnTo to one spelling.
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

// seeOther redirects to a local path. It sets Location itself: http.Redirect
// rewrites relative paths, and the target has been checked already.
func seeOther(w http.ResponseWriter, target string) {
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}

// isFormContent reports whether the request body has a type an HTML form
// can send, so a cross-site page could have sent it without script.
func isFormContent(r *http.Request) bool {
	ct := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	for _, t := range []string{"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"} {
		if ct == t || strings.HasPrefix(ct, t+";") {
			return true
		}
	}
	return false
}
