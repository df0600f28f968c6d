package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
)

// Gateway serves the public and admin handlers. Create one with [New]; it is
// safe for concurrent use.
type Gateway struct {
	cfg       Config
	sessions  *cloakroom.Manager
	admission *signin.Admission
	accounts  *accounts.Service
	proxy     *proxy.Proxy
	log       *slog.Logger
	metrics   *metrics
	csp       *cspReports
	pages     pages
	spa       http.Handler // nil when neither Static nor Frontend is set
	auth      string       // cfg.AuthPrefix
	cookie    string       // the session cookie's name

	trustedOrigins map[string]bool // the session manager's, for WebSocket handshakes

	public http.Handler
	admin  http.Handler
}

// New validates cfg and builds the gateway. Every problem in cfg is reported
// at once, each wrapped in ErrInvalidConfig.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:       cfg,
		sessions:  cfg.Sessions,
		admission: cfg.Admission,
		accounts:  cfg.Accounts,
		proxy:     cfg.Proxy,
		log:       cfg.Logger,
		auth:      cfg.AuthPrefix,
		cookie:    cfg.Sessions.Config().CookieName,

		trustedOrigins: trustedOriginSet(cfg.Sessions.Config().TrustedOrigins),
	}
	var err error
	more := cfg.Admission.Collectors()
	if cfg.Vault != nil {
		more = append(more, cfg.Vault.Collectors()...)
	}
	g.csp = newCSPReports()
	if g.metrics, err = newMetrics(cfg.Metrics, cfg.Sessions.Store(), append(more, g.csp.count)...); err != nil {
		return nil, err
	}
	if cfg.SessionHooks != nil {
		cfg.SessionHooks.metrics.Store(g.metrics)
	}
	if g.pages, err = parsePages(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Static != "":
		if g.spa, err = newStaticSPA(cfg.Static); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	case cfg.Frontend != nil:
		g.spa = newFrontendProxy(cfg.Frontend, []string{g.cookie, signin.DeviceCookie}, g.log)
	}
	if cfg.Proxy != nil {
		// The cookie names come from the session manager, not from a
		// second setting that could disagree with it.
		if err := cfg.Proxy.ProtectCookies(g.cookie, signin.DeviceCookie); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if cfg.OIDC != nil {
		cfg.OIDC.Embed(safeReturnTo, g.oidcErrorPage)
	}
	g.public = g.buildPublic()
	g.admin = g.buildAdmin()
	return g, nil
}

// Close releases the static folder. The handlers must not be used after.
func (g *Gateway) Close() error {
	if c, ok := g.spa.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Handler returns the handler for the public listener.
func (g *Gateway) Handler() http.Handler { return g.public }

// AdminHandler returns the handler for the admin listener, which should
// listen on loopback only: /healthz, /readyz, /metrics and the admin API.
func (g *Gateway) AdminHandler() http.Handler { return g.admin }

func (g *Gateway) buildPublic() http.Handler {
	mux := http.NewServeMux()
	a := g.auth
	mux.HandleFunc("GET "+a+"/login", g.loginPage)
	mux.HandleFunc("POST "+a+"/login", g.login)
	mux.HandleFunc("POST "+a+"/logout", g.logout)
	mux.HandleFunc("GET "+a+"/session", g.sessionInfo)
	mux.HandleFunc("GET "+a+"/sessions", g.listSessions)
	mux.HandleFunc("DELETE "+a+"/sessions/{handle}", g.revokeSession)
	mux.HandleFunc("POST "+a+"/sessions/revoke-others", g.revokeOtherSessions)
	mux.HandleFunc("POST "+a+"/sessions/revoke-all", g.revokeAllSessions)
	mux.HandleFunc("GET "+a+"/account", g.accountPage)
	mux.HandleFunc("POST "+a+"/account/revoke", g.accountRevoke)
	mux.HandleFunc("POST "+a+"/account/revoke-others", g.accountRevokeOthers)
	mux.HandleFunc("POST "+a+"/account/revoke-all", g.accountRevokeAll)
	mux.HandleFunc("POST "+a+"/account/password", g.accountPassword)
	mux.HandleFunc("POST "+a+"/password", g.passwordJSON)
	mux.HandleFunc("POST "+a+"/reauth", g.reauth)
	mux.HandleFunc("POST "+a+"/csp-report", g.cspReport)
	mux.Handle("GET "+a+"/assets/", http.StripPrefix(a+"/assets", assetHandler()))
	if g.cfg.OIDC != nil {
		g.cfg.OIDC.Register(mux)
	}
	// Anything else under the prefix is an unknown auth endpoint, never the
	// SPA or an upstream.
	mux.HandleFunc(a+"/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusNotFound, "not_found", "No such endpoint.")
	})
	if g.cfg.Signer != nil {
		mux.Handle("GET "+JWKSPath, g.cfg.Signer.JWKSHandler())
	}
	mux.HandleFunc("/", g.app)

	// Bodies are read before the session is loaded (see readAuthBodies).
	var h http.Handler = g.readAuthBodies(guardHijack(g.sessions.Handler(g.withStepUp(mux))))
	if g.cfg.TLS {
		h = hsts(h)
	}
	return h
}

// hsts makes browsers use HTTPS only, for two years, subdomains included
// (ASVS 5.0 3.4.1).
func hsts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		next.ServeHTTP(w, r)
	})
}

// app serves everything outside the auth prefix: allowlisted API routes,
// then the SPA.
func (g *Gateway) app(w http.ResponseWriter, r *http.Request) {
	// Any upgrade riding on a session cookie must come from our own
	// origin, even when the cookie names no live session: fail closed.
	if isUpgrade(r) && g.sessions.Session(r).CookieSent() && !g.upgradeFromOwnOrigin(r) {
		g.refuseUpgrade(w, r)
		return
	}
	if g.proxy != nil {
		if route, ok := g.proxy.Match(r.URL.Path); ok {
			if g.cfg.Vault != nil && g.cfg.Vault.Handles(route.Prefix) {
				g.serveVault(w, r, route)
				return
			}
			g.serveAPI(w, r, route)
			return
		}
	}
	if g.spa == nil {
		httpjson.Error(w, http.StatusNotFound, "not_found", "Not found.")
		return
	}
	if !g.isPublic(r.URL.Path) {
		if _, ok := g.requireSession(w, r, r.URL.RequestURI()); !ok {
			return
		}
	}
	g.securityHeaders(w.Header())
	g.spa.ServeHTTP(w, r)
}

func (g *Gateway) serveAPI(w http.ResponseWriter, r *http.Request, route proxy.Route) {
	// A 401 for an API call offers the login page without return_to: coming
	// back to a JSON endpoint after login helps nobody.
	s, ok := g.requireSession(w, r, "")
	if !ok {
		return
	}
	// The CSRF token is derived from the session token; upstreams have no
	// use for it.
	r.Header.Del(cloakroom.CSRFHeader)
	if r, ok = g.oidcUpstream(w, r, s, route.Prefix); !ok {
		return
	}
	start := time.Now()
	// A stream or WebSocket the upstream opens ends with the session, on
	// whichever node it is ended.
	token, _ := proxy.AccessTokenFrom(r.Context()) // OIDC token relay
	g.proxy.Serve(w, r, proxy.Call{Identity: sessionIdentity(s), AccessToken: token, Lifetime: s.Watch})
	g.metrics.proxyDuration.WithLabelValues(route.Prefix).Observe(time.Since(start).Seconds())
}

// serveVault proxies a request of a vault route: anonymous calls pass (the
// backend judges them), and the vault attaches the app's own token for
// logged-in ones.
func (g *Gateway) serveVault(w http.ResponseWriter, r *http.Request, route proxy.Route) {
	s := g.sessions.Session(r)
	if s.Err() != nil {
		g.unavailable(w, r)
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
	g.cfg.Vault.Serve(w, r, route.Prefix, g.proxy, call)
	g.metrics.proxyDuration.WithLabelValues(route.Prefix).Observe(time.Since(start).Seconds())
}

// sessionIdentity is the identity the proxy vouches for on behalf of s.
func sessionIdentity(s *cloakroom.Session) proxy.Identity {
	return proxy.Identity{User: s.UserID(), Email: signin.Email(s), Groups: signin.Roles(s)}
}

// isPublic reports whether p lies under one of Config.PublicPaths, on a
// segment boundary.
func (g *Gateway) isPublic(p string) bool {
	for _, prefix := range g.cfg.PublicPaths {
		if pathUnder(p, prefix) {
			return true
		}
	}
	return false
}

func pathUnder(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || strings.HasSuffix(prefix, "/") || p[len(prefix)] == '/'
}

// requireSession returns the request's session when it is logged in.
// Otherwise it answers: 503 when the store failed, else 401 JSON for
// scripts or a redirect to the login page for navigations, which come back
// to returnTo ("" for none).
func (g *Gateway) requireSession(w http.ResponseWriter, r *http.Request, returnTo string) (*cloakroom.Session, bool) {
	s := g.sessions.Session(r)
	if s.Err() != nil {
		g.unavailable(w, r)
		return nil, false
	}
	if s.LoggedIn() {
		return s, true
	}
	loginURL := g.loginURL(returnTo)
	if isNavigation(r) {
		seeOther(w, loginURL)
		return nil, false
	}
	w.Header().Set("Cache-Control", "no-store")
	httpjson.Write(w, http.StatusUnauthorized, map[string]string{
		"error":     "unauthenticated",
		"message":   "Log in first.",
		"login_url": loginURL,
	})
	return nil, false
}

// loginURL returns the login page's URL, with return_to when it is a safe
// local path.
func (g *Gateway) loginURL(returnTo string) string {
	u := g.auth + "/login"
	if returnTo != "" {
		if safe := safeReturnTo(returnTo); safe != "/" || returnTo == "/" {
			u += "?return_to=" + url.QueryEscape(safe)
		}
	}
	return u
}

// isNavigation tells a top-level page load from a script's request. Fetch
// Metadata decides when present; otherwise an Accept header asking for HTML
// means a browser navigation, and X-Requested-With marks XHR.
func isNavigation(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// unavailable answers a request whose session could not be loaded. The
// request is never served as logged in.
func (g *Gateway) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	if isNavigation(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "Service Unavailable: sessions cannot be checked right now. Try again shortly.", http.StatusServiceUnavailable)
		return
	}
	httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The session store cannot be reached. Try again shortly.")
}
