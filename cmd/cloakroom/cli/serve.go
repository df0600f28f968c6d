package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
	"github.com/cloakroom/cloakroom/vault"
)

// HTTP server limits, for both listeners. They bound how long a slow or
// idle client can hold a connection (slowloris) and how large its headers
// may grow.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 120 * time.Second // proxied responses included
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 10 * time.Second
)

// signerAudience is the signer's default aud, which NewSigner requires.
// serve never uses it: the proxy signs every token for its route's audience
// (Route.Audience, from --upstream-audience, by default the prefix).
const signerAudience = "cloakroom-upstream"

func serveSettingNames() []string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.name
	}
	return names
}

func runServe(e *env, args []string) int {
	fs := newFlagSet(e, "serve", "[flags]",
		`Run the gateway: a public listener with the login pages, the SPA and the
allowlisted API upstreams behind the session middleware, and an admin
listener on loopback with /healthz, /readyz, /metrics and the admin API.

Settings come from flags, then CLOAKROOM_* environment variables (lists
comma-separated), then the JSON file named by --config, then the defaults.
Every problem is reported at once; --check-config only validates.`)
	cf := registerSettings(fs, serveSettingNames()...)
	checkOnly := fs.Bool("check-config", false, "validate the configuration and exit 0 if valid, 1 if not, without listening or opening the store")
	if code, ok := parseFlagsOnly(fs, args, " (settings are flags)"); !ok {
		return code
	}
	cfg, problems := cf.resolve(e.lookupEnv)
	p, err := validate(cfg)
	problems = append(problems, flatten(err)...)
	if len(problems) > 0 {
		fmt.Fprintf(e.stderr, "cloakroom serve: invalid configuration, %d problem(s):\n", len(problems))
		for _, pr := range problems {
			fmt.Fprintf(e.stderr, "  - %s\n", plainMessage(pr))
		}
		return exitFailure
	}
	if *checkOnly {
		// The warnings serve would log at start.
		for _, w := range p.warnings {
			fmt.Fprintf(e.stderr, "cloakroom serve: warning: %s\n", w)
		}
		fmt.Fprintln(e.stdout, "cloakroom serve: configuration OK")
		return exitOK
	}
	logger := newLogger(e.stderr, p.logLevel, p.cfg.LogFormat)
	if err := serve(e.ctx, p, logger, nil); err != nil {
		logger.Error("cloakroom serve failed", "err", plainMessage(err))
		return exitFailure
	}
	return exitOK
}

func newLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// gatewayRuntime is everything `serve` builds before it listens.
type gatewayRuntime struct {
	stores *storeurl.Stores
	signer *upstreamjwt.Signer
	*gateway.Stack
}

func (rt *gatewayRuntime) close() {
	if rt.Stack != nil {
		// Its watchers read the store: stopped before the store closes.
		rt.Stack.Close()
	}
	if rt.stores != nil {
		rt.stores.Close()
	}
}

// buildGateway opens the store and assembles the gateway from the plan:
// the session manager, the account service, the signer, the vault, the
// OpenID client and the gateway, as the lab assembles its own.
func buildGateway(ctx context.Context, p *plan, logger *slog.Logger) (_ *gatewayRuntime, err error) {
	rt := &gatewayRuntime{}
	defer func() {
		if err != nil {
			rt.close()
		}
	}()
	for _, w := range p.warnings { // the ones --check-config prints
		logger.Warn(w)
	}
	if rt.stores, err = storeurl.OpenWith(ctx, p.cfg.Store, storeurl.Options{Logger: logger, CreateSQLite: true}); err != nil {
		return nil, err
	}
	parts := gateway.Parts{
		Sessions: cloakroom.Config{
			Store:           rt.stores.Sessions,
			SameSite:        p.sameSite,
			IdleTimeout:     p.cfg.IdleTimeout,
			AbsoluteTimeout: p.cfg.AbsoluteTimeout,
			TrustedOrigins:  p.cfg.TrustedOrigins,
			Logger:          logger,
		},
		AccountStore: rt.stores.Accounts,
		Accounts:     accounts.Config{Logger: logger, Throttle: rt.stores.Throttle},
		Admission:    signin.Config{Logger: logger, RequireSecondFactor: p.cfg.RequireSecondFactor},
		Gateway: gateway.Config{
			Routes:        p.routes,
			Static:        p.cfg.Static,
			Frontend:      p.frontend,
			PublicPaths:   p.cfg.Public,
			CSP:           p.cfg.CSP,
			CSPReportOnly: p.cfg.CSPReportOnly,
			AdminToken:    p.adminToken,
			FactorRoutes:  p.cfg.RequireFactorRoutes,
			// Behind a TLS-terminating proxy the browser speaks HTTPS too.
			TLS:    p.tls != nil || p.cfg.InsecureHTTPBehindProxy,
			Logger: logger,
		},
	}
	if p.dbsc != nil {
		binder := p.dbsc.binder
		parts.Binding, parts.RequireBinding = &binder, p.dbsc.require
	}
	if p.totpKeys != nil { // a typed nil would be a Sealer
		parts.Accounts.Sealer = p.totpKeys
	}
	parts.Accounts.Passkeys = p.passkeys
	if len(p.proxies) > 0 {
		parts.Sessions.ClientIP = clientIPFunc(p.proxies)
	}
	if p.cfg.InternalJWT {
		if rt.signer, err = newSigner(p, logger); err != nil {
			return nil, err
		}
		parts.Gateway.Signer = rt.signer
	}
	if p.vault != nil {
		parts.Vault = &vault.Config{Sealer: p.vault.keys, Routes: p.vault.routes, Logger: logger}
	}
	if p.oidc != nil {
		parts.OIDC = &oidcbff.Config{
			Providers: p.oidc.providers, PublicURL: p.cfg.PublicURL,
			Sealer: p.oidc.keys, StepUp: p.oidc.stepUp, Logger: logger,
		}
		parts.Relay = p.oidc.relay
	}
	parts.ForwardAuth = p.forwardAuth
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second) // bounds the providers' discovery
	defer cancel()
	if rt.Stack, err = gateway.Assemble(dctx, parts); err != nil {
		return nil, err
	}
	if rt.OIDC != nil {
		for _, pc := range p.oidc.providers {
			logger.Info("OpenID provider ready", "provider", pc.Name, "issuer", pc.Issuer,
				"redirect_uri", rt.OIDC.CallbackURL(pc.Name), "post_logout_redirect_uri", rt.OIDC.PostLogoutURL())
		}
	}
	return rt, nil
}

// newSigner loads (or creates) the internal JWT's key and returns its
// signer.
func newSigner(p *plan, logger *slog.Logger) (*upstreamjwt.Signer, error) {
	key := p.jwtKey
	if key == nil {
		var created bool
		var err error
		if key, created, err = loadOrCreateJWTKey(p.jwtKeyPath); err != nil {
			return nil, err
		}
		if created {
			logger.Info("generated the internal JWT signing key", "file", p.jwtKeyPath)
		}
	}
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: p.cfg.JWTIssuer, Audience: signerAudience})
	if err != nil {
		return nil, fmt.Errorf("internal JWT signer: %w", err)
	}
	return signer, nil
}

// listener is one HTTP server on its socket.
type listener struct {
	name   string
	server *http.Server
	socket net.Listener
	tls    bool
}

func newServer(h http.Handler, logger *slog.Logger, p *plan, useTLS bool) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if useTLS {
		srv.TLSConfig = p.tls.Clone()
	}
	return srv
}

// serveHooks lets `demo` add servers and learn the bound addresses.
type serveHooks struct {
	public, admin net.Listener // pre-opened sockets; nil: listen on the configured addresses
	extra         []listener   // more servers to run and stop with the gateway (the demo app)
	// ready runs once the sockets are open, before serving; it may return
	// more servers to run.
	ready func(rt *gatewayRuntime, public, admin net.Addr) ([]listener, error)
}

// serve builds the gateway and runs its listeners until ctx is cancelled,
// then shuts them down gracefully.
func serve(ctx context.Context, p *plan, logger *slog.Logger, hooks *serveHooks) error {
	if hooks == nil {
		hooks = &serveHooks{}
	}
	servers := hooks.extra
	defer func() {
		// Release every socket, including those never served after a
		// failed start.
		for _, l := range servers {
			l.socket.Close()
		}
		for _, s := range []net.Listener{hooks.public, hooks.admin} {
			if s != nil {
				s.Close()
			}
		}
	}()
	// The sockets first: a port that is taken (the demo still running)
	// fails the start before the store, the key or anything else is
	// created.
	var err error
	public := hooks.public
	if public == nil {
		if public, err = net.Listen("tcp", p.cfg.Listen); err != nil {
			return fmt.Errorf("public listener: %w", err)
		}
		hooks.public = public // closed by the deferred release on failure
	}
	var admin net.Listener
	if p.cfg.AdminListen != "" {
		if admin = hooks.admin; admin == nil {
			if admin, err = net.Listen("tcp", p.cfg.AdminListen); err != nil {
				return fmt.Errorf("admin listener: %w", err)
			}
			hooks.admin = admin
		}
	}
	rt, err := buildGateway(ctx, p, logger)
	if err != nil {
		return err
	}
	defer rt.close()

	servers = append(servers, listener{"public", newServer(rt.Gateway.Handler(), logger, p, p.tls != nil), public, p.tls != nil})
	var adminAddr net.Addr
	if admin != nil {
		adminAddr = admin.Addr()
		servers = append(servers, listener{"admin", newServer(rt.Gateway.AdminHandler(), logger, p, p.adminTLS), admin, p.adminTLS})
	}
	scheme := "http"
	if p.tls != nil {
		scheme = "https"
	}
	attrs := []any{"public", scheme + "://" + public.Addr().String(), "store", rt.stores.Location.String()}
	if adminAddr != nil {
		attrs = append(attrs, "admin", adminScheme(p)+"://"+adminAddr.String())
	}
	logger.Info("listening", attrs...)
	if hooks.ready != nil {
		more, err := hooks.ready(rt, public.Addr(), adminAddr)
		servers = append(servers, more...)
		if err != nil {
			return err
		}
	}
	return runServers(ctx, logger, servers)
}

func adminScheme(p *plan) string {
	if p.adminTLS {
		return "https"
	}
	return "http"
}

// runServers serves every listener until ctx is cancelled or one fails,
// then shuts all down, waiting up to shutdownTimeout for requests in
// flight.
func runServers(ctx context.Context, logger *slog.Logger, servers []listener) error {
	errs := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, l := range servers {
		wg.Go(func() {
			var err error
			if l.tls {
				err = l.server.ServeTLS(l.socket, "", "")
			} else {
				err = l.server.Serve(l.socket)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("%s listener: %w", l.name, err)
			}
		})
	}
	var failure error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "reason", context.Cause(ctx))
	case failure = <-errs:
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var shutdownErrs []string
	for _, l := range servers {
		if err := l.server.Shutdown(shutdownCtx); err != nil {
			shutdownErrs = append(shutdownErrs, l.name+": "+err.Error())
			l.server.Close()
		}
	}
	wg.Wait()
	if len(shutdownErrs) > 0 {
		logger.Warn("requests were cut off at shutdown", "listeners", strings.Join(shutdownErrs, "; "))
	}
	if failure == nil {
		logger.Info("stopped")
	}
	return failure
}
