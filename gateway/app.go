package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// app serves everything outside the auth prefix: allowlisted API routes,
// then the SPA.
type app struct {
	base
	proxy   *proxy.Proxy    // nil without API routes
	vault   *vault.Vault    // nil without vault routes
	oidc    *oidcbff.Client // nil without OpenID providers
	spa     http.Handler    // nil when neither Static nor Frontend is set
	public  []string        // Config.PublicPaths
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
			if a.vault != nil && a.vault.Handles(route.Prefix) {
				a.serveVault(w, r, route)
				return
			}
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

func (a *app) serveAPI(w http.ResponseWriter, r *http.Request, route proxy.Route) {
	// A 401 for an API call offers the login page without return_to: coming
	// back to a JSON endpoint after login helps nobody.
	s, ok := a.loggedIn(w, r, "")
	if !ok {
		return
	}
	// The CSRF token is derived from the session token; upstreams have no
	// use for it.
	r.Header.Del(cloakroom.CSRFHeader)
	if r, ok = a.oidcUpstream(w, r, s, route.Prefix); !ok {
		return
	}
	start := time.Now()
	// A stream or WebSocket the upstream opens ends with the session, on
	// whichever node it is ended.
	token, _ := proxy.AccessTokenFrom(r.Context()) // OIDC token relay
	a.proxy.Serve(w, r, proxy.Call{Identity: sessionIdentity(s), AccessToken: token, Lifetime: s.Watch})
	a.metrics.proxyDuration.WithLabelValues(route.Prefix).Observe(time.Since(start).Seconds())
}

// serveVault proxies a request of a vault route: anonymous calls pass (the
// backend judges them), and the vault attaches the app's own token for
// logged-in ones.
func (a *app) serveVault(w http.ResponseWriter, r *http.Request, route proxy.Route) {
	s := a.sessions.Session(r)
	if s.Err() != nil {
		a.unavailable(w, r)
		return
	}
	r.Header.Del(cloakroom.CSRFHeader)
	var call proxy.Call
	if s.LoggedIn() {
		// As on other routes, what outlives the exchange ends with the
		// session; unless this very call ended it (the app's own logout,
		// which the vault lets through once).
		lifetime := func(ctx context.Context) (context.Context, context.CancelFunc) {
			if !s.LoggedIn() {
				return context.WithCancel(ctx)
			}
			return s.Watch(ctx)
		}
		call = proxy.Call{Identity: sessionIdentity(s), Lifetime: lifetime}
	}
	start := time.Now()
	a.vault.Serve(w, r, route.Prefix, a.proxy, call)
	a.metrics.proxyDuration.WithLabelValues(route.Prefix).Observe(time.Since(start).Seconds())
}

// oidcUpstream applies the OIDC client's step-up rules and token relay to a
// proxied request. It answers and reports false when the request must not
// go upstream.
func (a *app) oidcUpstream(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, prefix string) (*http.Request, bool) {
	if a.oidc == nil {
		return r, true
	}
	ctx, err := a.oidc.Upstream(r, s, prefix)
	var reauth *oidcbff.ReauthError
	switch {
	case err == nil:
		return r.WithContext(ctx), true
	case errors.As(err, &reauth):
		reauthenticate(w, r, reauth.LoginURL)
	case errors.Is(err, oidcbff.ErrSessionEnded):
		// The provider refused a refresh: the sign-in is over everywhere.
		a.log.InfoContext(r.Context(), "session ended by the provider", "user", s.UserID(), "session", s.Ref(), "reason", err.Error())
		_ = s.Logout(r.Context())
		httpjson.Write(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthenticated", "message": "Your sign-in has ended. Log in again.", "login_url": a.auth + "/login",
		})
	default:
		a.log.WarnContext(r.Context(), "access token unavailable", "user", s.UserID(), "err", err)
		a.fail(w, r, false, newProblem(http.StatusServiceUnavailable, "unavailable", "The identity provider cannot be reached. Try again shortly."))
	}
	return nil, false
}

// sessionIdentity is the identity the proxy vouches for on behalf of s.
func sessionIdentity(s *cloakroom.Session) proxy.Identity {
	return proxy.Identity{User: s.UserID(), Email: signin.Email(s), Groups: signin.Roles(s)}
}

// isPublic reports whether p lies under one of Config.PublicPaths, on a
// segment boundary.
func (a *app) isPublic(p string) bool {
	for _, prefix := range a.public {
		if pathUnder(p, prefix) {
			return true
		}
	}
	return false
}
