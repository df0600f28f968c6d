package gateway

import (
	"net/http"

	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
)

// crossSitePage is the answer to a navigation refused as cross-site: a
// small page, no script, nothing taken from the request.
const crossSitePage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Request refused</title></head>
<body><h1>Request refused</h1>
<p>This request came from another site, so it was not carried out. If you meant to do this, go back to the application and try again from there.</p>
<p><a href="/">Back to the application</a></p></body></html>
`

// CrossSiteRefused answers a request the session middleware refused as
// cross-site, as docs/endpoints.md documents: {"error":"csrf"} JSON with
// status 403 to scripts, a small page to navigations. Set it as the session
// manager's Config.Forbidden (cloakroom serve does).
var CrossSiteRefused http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if httpx.IsNavigation(r) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(crossSitePage))
		return
	}
	httpjson.Error(w, http.StatusForbidden, "csrf", "Cross-site request refused.")
})
