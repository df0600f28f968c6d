package gateway

import (
	"net/http"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
)

// app serves everything outside the auth prefix: allowlisted API routes,
// then the SPA.
type app struct {
	base
	proxy   *proxy.Proxy // nil without API routes
	spa     http.Handler // nil when neither Static nor Frontend is set
	public  []string     // Config.PublicPaths
	headers func(http.Header)
	tls     bool
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Any upgrade riding on a session cookie must come from our own
	// origin, even when the cookie names no live session: fail closed.
	if isUpgrade(r) && a.sessions.Session(r).CookieSent() && !a.upgradeFromOwnOrigin(r) {
		a.refuseUpgrade(w, r)
		return
	}
	if a.proxy != nil {
		if route, ok := a.proxy.Match(r.URL.Path); ok {
			a.serveAPI(w, r, route)
			return
		}
	}
	if a.spa == nil {
		httpjson.Error(w, http.StatusNotFound, "not_found", "Not found.")
		return
	}
	if !a.isPublic(r.URL.Path) {
		if _, ok := a.loggedIn(w, r, r.URL.RequestURI()); !ok {
			return
		}
	}
	a.headers(w.Header())
	a.spa.ServeHTTP(w, r)
}

// serveAPI proxies a request of an API route for its session: a route
// needs one unless its mode takes anonymous requests (the vault), and the
// route's mode does the rest (see proxy.Mode).
func (a *app) serveAPI(w http.ResponseWriter, r *http.Request, route proxy.Route) {
	s := a.sessions.Session(r)
	var call proxy.Call
	switch {
	case s.Err() != nil:
		a.unavailable(w, r)
		return
	case s.LoggedIn():
		// A stream or WebSocket the upstream opens ends with the session,
		// on whichever node it is ended.
		call = proxy.Call{Identity: sessionIdentity(s), Lifetime: s.Watch}
	case !route.Anonymous():
		// A 401 offers the login page without return_to: coming back to
		// a JSON endpoint after login helps nobody.
		a.loggedIn(w, r, "")
		return
	}
	// The CSRF token is derived from the session token; upstreams have no
	// use for it.
	r.Header.Del(cloakroom.CSRFHeader)
	start := time.Now()
	a.proxy.Serve(w, r, call)
	a.metrics.proxyDuration.WithLabelValues(route.Prefix).Observe(time.Since(start).Seconds())
}

// sessionIdentity is the identity the proxy vouches for on behalf of s.
func sessionIdentity(s *cloakroom.Session) proxy.Identity {
	return proxy.Identity{User: s.UserID(), Email: signin.Email(s), Groups: signin.Roles(s), AMR: signin.AMR(s)}
}

// isPublic reports whether p lies under one of Config.PublicPaths, on a
// segment boundary.
func (a *app) isPublic(p string) bool {
	for _, prefix := range a.public {
		if httpx.PathUnder(p, prefix) {
			return true
		}
	}
	return false
}
