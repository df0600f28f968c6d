// Package httpx holds the small HTTP rules several of cloakroom's packages
// apply alike (the gateway, the proxy, the vault, the OpenID client), so
// each is written once: which paths lie under a prefix, and how a cookie
// is taken out of a request.
package httpx

import (
	"net/http"
	"strings"
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
// removed. Names compare exactly, as browsers send them.
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
