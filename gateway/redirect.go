package gateway

import (
	"net/http"
	"strings"
)

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
