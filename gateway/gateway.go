package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
)

// Gateway serves the public and admin handlers. Create one with [New]; it is
// safe for concurrent use.
type Gateway struct {
	public http.Handler
	admin  http.Handler
	spa    io.Closer // the static folder, nil without one
	app    *app
}

// New validates cfg and builds the gateway, every part once. Every problem
// in cfg is reported at once, each wrapped in ErrInvalidConfig.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := base{
		sessions: cfg.Sessions, auth: cfg.AuthPrefix, now: cfg.Now, log: cfg.Logger,
		forms: &formPages{}, passkeys: cfg.Accounts.PasskeysEnabled(),
	}
	var logoutOrigins []string
	if cfg.OIDC != nil {
		logoutOrigins = cfg.OIDC.EndSessionOrigins()
	}
	b.pageCSP = pageCSP(logoutOrigins, b.passkeys)
	csp := newCSPReports(cfg.Sessions, cfg.Logger, cfg.Now)
	more := append(cfg.Admission.Collectors(), csp.count)
	if cfg.Vault != nil {
		more = append(more, cfg.Vault.Collectors()...)
	}
	// The gateway's own cookies besides the session's: upstreams never
	// see them nor set them.
	others := []string{signin.DeviceCookie}
	var reserved []string
	if cfg.Binder != nil {
		more = append(more, cfg.Binder.Collectors()...)
		others = append(others, cfg.Binder.Config().CookieName)
		reserved = []string{dbsc.HeaderRegistration, dbsc.HeaderChallenge}
	}
	b.metrics = cfg.Metrics
	if err := errors.Join(b.metrics.register(more...), b.metrics.registerStore(cfg.Sessions.Store())); err != nil {
		return nil, err
	}
	var err error
	if b.pages, err = parsePages(); err != nil {
		return nil, err
	}
	cookie := cfg.Sessions.Config().CookieName
	g := &Gateway{}
	var spa http.Handler
	switch {
	case cfg.Static != "":
		static, err := newStaticSPA(cfg.Static)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		spa, g.spa = static, static
	case cfg.Frontend != nil:
		spa = newFrontendProxy(cfg.Frontend, append([]string{cookie}, others...), cfg.Logger)
	}
	var px *proxy.Proxy
	if len(cfg.Routes) > 0 {
		// The cookie names come from the session manager and the
		// sign-in rules, not from settings that could disagree with them.
		px, err = proxy.New(proxy.Config{
			Routes: cfg.Routes, SessionCookie: cookie, OtherCookies: others, ReservedHeaders: reserved,
			Signer: cfg.Signer, Transport: cfg.Transport, ErrorLog: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	revoke := &revocations{base: b}
	pw := &passwords{base: b, admission: cfg.Admission, accounts: cfg.Accounts, revoke: revoke}
	up := &stepUp{base: b, admission: cfg.Admission, window: cfg.StepUpWindow, oidc: cfg.OIDC, passwords: pw, accounts: cfg.Accounts,
		factorRoutes: slices.Clone(cfg.FactorRoutes)}
	totp := &totpEnrolment{base: b, accounts: cfg.Accounts}
	pk := &passkeyPages{base: b, accounts: cfg.Accounts}
	h := handlers{
		signIn:   &signInPages{base: b, admission: cfg.Admission, accounts: cfg.Accounts, oidc: cfg.OIDC, passkeyLimit: newPasskeyLimit()},
		devices:  &devicesAPI{base: b, revoke: revoke, stepUp: up},
		account:  &accountPages{base: b, revoke: revoke, stepUp: up, totp: totp, passkeys: pk},
		totp:     totp,
		passkeys: pk,
		pw:       pw,
		stepUp:   up,
		csp:      csp,
		app:      &app{base: b, proxy: px, spa: spa, public: cfg.PublicPaths, headers: spaHeaders(&cfg), tls: cfg.TLS},
		bodies:   &bodyReader{auth: cfg.AuthPrefix, timeout: cfg.BodyReadTimeout, log: cfg.Logger, clientIP: cfg.Sessions.Config().ClientIP},
	}
	b.forms.account = h.account.formFailed
	g.app = h.app
	g.public = h.routes(b, &cfg)
	g.admin = (&adminAPI{base: b, token: cfg.AdminToken, registry: cfg.Metrics.registry, accounts: cfg.Accounts}).handler()
	return g, nil
}

// Close releases the static folder. The handlers must not be used after.
func (g *Gateway) Close() error {
	if g.spa != nil {
		return g.spa.Close()
	}
	return nil
}

// Handler returns the handler for the public listener.
func (g *Gateway) Handler() http.Handler { return g.public }

// AdminHandler returns the handler for the admin listener, which should
// listen on loopback only: /healthz, /readyz, /metrics and the admin API.
func (g *Gateway) AdminHandler() http.Handler { return g.admin }

// handlers are the parts of the public listener.
type handlers struct {
	signIn   *signInPages
	devices  *devicesAPI
	account  *accountPages
	pw       *passwords
	stepUp   *stepUp
	totp     *totpEnrolment
	passkeys *passkeyPages
	csp      *cspReports
	app      *app
	bodies   *bodyReader
}

// routes is the public listener's route table: each route states what it
// needs (a session for a JSON endpoint or a page, a CSRF token in a form
// field, a recent sign-in) with a wrapper, and its handler does only its
// job.
func (h handlers) routes(b base, cfg *Config) http.Handler {
	mux := http.NewServeMux()
	a := cfg.AuthPrefix
	route := func(pattern string, handler http.Handler) { mux.Handle(pattern, handler) }
	route("GET "+a+"/login", http.HandlerFunc(h.signIn.loginPage))
	route("POST "+a+"/login", http.HandlerFunc(h.signIn.login))
	route("GET "+a+"/second-factor", http.HandlerFunc(h.signIn.secondFactorPage))
	route("POST "+a+"/second-factor", http.HandlerFunc(h.signIn.secondFactor))
	route("GET "+a+"/second-factor/enrol", http.HandlerFunc(h.signIn.enrolPage))
	route("GET "+a+"/second-factor/enrol/qr", http.HandlerFunc(h.signIn.enrolQR))
	route("POST "+a+"/second-factor/enrol", http.HandlerFunc(h.signIn.enrol))
	route("POST "+a+"/logout", b.formCSRF(csrfForm, http.HandlerFunc(h.signIn.logout)))
	route("GET "+a+"/session", b.api(h.devices.info))
	route("GET "+a+"/sessions", b.api(h.devices.list))
	route("DELETE "+a+"/sessions/{handle}", b.api(b.formCSRF(csrfJSON, http.HandlerFunc(h.devices.revokeOne)).ServeHTTP))
	route("PUT "+a+"/sessions/{handle}/name", b.api(b.formCSRF(csrfJSON, http.HandlerFunc(h.devices.name)).ServeHTTP))
	route("POST "+a+"/sessions/revoke-others", b.api(b.formCSRF(csrfJSON, h.stepUp.requireRecent(false, "", h.stepUp.requireFactor(false, h.devices.revokeOthers))).ServeHTTP))
	route("POST "+a+"/sessions/revoke-all", b.api(b.formCSRF(csrfJSON, http.HandlerFunc(h.devices.revokeAll)).ServeHTTP))
	route("POST "+a+"/reauth", b.api(h.pw.reauth))
	route("POST "+a+"/password", b.api(h.pw.changeJSON))
	// An account form's problems are shown next to that form on the
	// account page (see base.fail).
	account := func(form string, handler http.HandlerFunc) http.Handler {
		return withPageForm(form, b.page(a+"/account", b.formCSRF(csrfPage, handler).ServeHTTP))
	}
	route("GET "+a+"/account", b.page(a+"/account", h.account.page))
	route("POST "+a+"/account/revoke", account(formRevoke, h.account.revokeOne))
	route("POST "+a+"/account/revoke-others", account(formRevokeOthers, h.stepUp.requireRecent(true, a+"/account", h.stepUp.requireFactor(true, h.account.revokeOthers))))
	route("POST "+a+"/account/revoke-all", account(formRevokeAll, h.account.revokeAll))
	route("POST "+a+"/account/name", account(formName, h.account.name))
	route("POST "+a+"/account/password", account(formPassword, h.pw.changeForm))
	// TOTP enrolment: started after a recent sign-in (the form's password
	// field when it is old), confirmed by a code from the same session.
	// Adding or removing a factor, like ending other sessions, needs a
	// session that passed the account's factor, if it has one: a
	// password-only session of before it must not swap it out.
	route("POST "+a+"/account/totp", account(formTOTP, h.stepUp.requireRecent(true, a+"/account", h.stepUp.requireFactor(true, h.totp.start))))
	route("GET "+a+"/account/totp", b.page(a+"/account", h.totp.page))
	route("GET "+a+"/account/totp/qr", b.page(a+"/account", h.totp.qr))
	route("POST "+a+"/account/totp/confirm", b.page(a+"/account", b.formCSRF(csrfPage, http.HandlerFunc(h.totp.confirm)).ServeHTTP))
	if b.passkeys {
		// Passkeys: sign-in without a name (the ceremony's challenge in
		// an auxiliary record named by a cookie of the browser that
		// asked), registration after a recent sign-in (the challenge
		// bound to the session), removal.
		route("POST "+a+"/passkey/begin", http.HandlerFunc(h.signIn.passkeyBegin))
		route("POST "+a+"/passkey/finish", http.HandlerFunc(h.signIn.passkeyFinish))
		// A passkey as the second factor, after the password: the
		// ceremony's state in the pending sign-in's record.
		route("POST "+a+"/second-factor/passkey/begin", http.HandlerFunc(h.signIn.passkeyFactorBegin))
		route("POST "+a+"/second-factor/passkey/finish", http.HandlerFunc(h.signIn.passkeyFactorFinish))
		route("POST "+a+"/account/passkeys", account(formPasskey, h.stepUp.requireRecent(true, a+"/account", h.stepUp.requireFactor(true, h.passkeys.start))))
		route("GET "+a+"/account/passkeys/new", b.page(a+"/account", h.passkeys.page))
		route("POST "+a+"/account/passkeys/finish", b.api(b.formCSRF(csrfJSON, http.HandlerFunc(h.passkeys.finish)).ServeHTTP))
		route("POST "+a+"/account/passkeys/remove", account(formPasskey, h.stepUp.requireRecent(true, a+"/account", h.stepUp.requireFactor(true, h.passkeys.remove))))
	}
	route("POST "+a+"/csp-report", h.csp)
	if cfg.Binder != nil {
		// Device binding: the browser posts its key's proofs here, with
		// the session cookie; the refresh works without the bound cookie
		// it renews (Binder.Check lets it through).
		bc := cfg.Binder.Config()
		endpoints := cfg.Binder.Handler(b.sessions)
		route("POST "+bc.RegisterPath, endpoints)
		route("POST "+bc.RefreshPath, endpoints)
	}
	route("GET "+a+"/assets/", http.StripPrefix(a+"/assets", assetHandler()))
	if cfg.OIDC != nil {
		cfg.OIDC.Register(mux, h.signIn.errorPage)
	}
	// Anything else under the prefix is an unknown auth endpoint, never the
	// SPA or an upstream: a page for a navigation, JSON for a script.
	route(a+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.fail(w, r, httpx.IsNavigation(r), errNoSuchPath)
	}))
	if cfg.Signer != nil {
		route("GET "+JWKSPath, cfg.Signer.JWKSHandler())
	}
	route("/", h.app)

	// Bodies are read before the session is loaded (see bodyReader).
	var handler http.Handler = b.cookieLimit(h.bodies.wrap(guardHijack(b.sessions.Handler(h.stepUp.routes(mux)))))
	if cfg.TLS {
		handler = hsts(handler)
	}
	if fa := cfg.ForwardAuth; fa != nil {
		// Decisions run the core's middleware on the original request,
		// not on the proxy's: they go around this listener's.
		handler = forwardAuthFirst(fa.Prefix(), fa, handler)
	}
	return handler
}

// forwardAuthFirst sends requests under prefix to decide, others to next.
func forwardAuthFirst(prefix string, decide, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) {
			decide.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hsts makes browsers use HTTPS only, for two years, subdomains included
// (ASVS 5.0 3.4.1).
func hsts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		next.ServeHTTP(w, r)
	})
}
