package lab

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/accounts/sqliteaccounts"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/localtls"
	"github.com/cloakroom/cloakroom/lab/attacker"
	"github.com/cloakroom/cloakroom/lab/guestbook"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/sqlitestore"
	"github.com/cloakroom/cloakroom/upstreamjwt"
	"github.com/cloakroom/cloakroom/vault"
)

// Demo user names.
const (
	AdminUser = "admin"
	GuestUser = "guest"
)

// CSP is the Content-Security-Policy the cloakroom app sends when
// Options.CSP is set: scripts only from the app itself (no inline script,
// no event-handler attributes), requests only to the app itself.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// gatewayAudience is the audience of the gateway's signed assertion that
// the cloakroom app's API checks.
const gatewayAudience = "guestbook-lab-api"

// ErrNotLoopback is returned by [Start] for an address that is not a
// loopback one: the lab is deliberately vulnerable.
var ErrNotLoopback = errors.New("lab: the lab listens on loopback addresses only")

// Options configures [Start]. The zero value starts everything on free
// loopback ports with in-memory stores, CSP off and random passwords.
type Options struct {
	// JWTAddr, CloakroomAddr and AttackerAddr are the listen addresses
	// (host:port) of the jwt app, the cloakroom app and the attacker. The
	// host must be a loopback address or "localhost"; port 0 picks a free
	// one. Default "127.0.0.1:0". The apps are reached as
	// http://localhost:PORT and the attacker as http://127.0.0.1:PORT, two
	// different sites for the browser.
	JWTAddr, CloakroomAddr, AttackerAddr string
	// VaultAddr is the listen address of the vault app: the jwt app, page
	// and API unchanged, behind the gateway in vault mode. Default
	// "127.0.0.1:0".
	VaultAddr string
	// CSP makes the cloakroom app send the strict Content-Security-Policy
	// [CSP]. Default false, to show what an XSS payload can still do.
	CSP bool
	// SQLite keeps the cloakroom app's sessions and accounts in a SQLite
	// file in a temporary folder, removed by Close. Default false: memory.
	SQLite bool
	// AdminPassword and GuestPassword are the demo users' passwords, at
	// least 8 characters. Default: random ones, returned in [Lab].
	AdminPassword, GuestPassword string
	// Logger receives the servers' logs, the gateway's audit events
	// included. Default: discarded.
	Logger *slog.Logger
	// HTTPS serves the cloakroom app over HTTPS, https://localhost:PORT,
	// with a throwaway self-signed certificate: start Chromium with
	// --ignore-certificate-errors-spki-list=[Lab.SPKIPin] to trust it.
	// Device-bound sessions need it: Chromium registers none over plain
	// HTTP. The page then cannot load the attacker's script, served over
	// plain HTTP (mixed content), so the XSS chain needs HTTPS off.
	// Default false: plain HTTP, which Chromium accepts for Secure
	// cookies on localhost.
	HTTPS bool
	// DBSC turns on device binding in the cloakroom app (package dbsc):
	// a browser with Device Bound Session Credentials binds the admin's
	// session to a key it keeps, and a copy of its cookie store stops
	// working once the short-lived bound cookie in it expires. It implies
	// HTTPS. In Chromium on Linux, DBSC needs
	// --enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting.
	// Default false.
	DBSC bool
	// BoundCookieLifetime is, with DBSC, how long a bound cookie works:
	// how long a copied cookie store keeps working. Default the package
	// default, dbsc.DefaultCookieLifetime (5 minutes); at least 10 s.
	BoundCookieLifetime time.Duration
}

// Credentials are a demo user's name and password.
type Credentials struct {
	Name, Password string
}

// Lab is a running lab. Its fields are read-only.
type Lab struct {
	// JWTURL, CloakroomURL, VaultURL and AttackerURL are the servers'
	// origins.
	JWTURL, CloakroomURL, VaultURL, AttackerURL string
	// Admin and Guest sign in to both apps.
	Admin, Guest Credentials
	// Comment is the stored-XSS comment to post as the guest.
	Comment string
	// CSP reports whether the cloakroom app sends [CSP].
	CSP bool
	// DBSC reports whether the cloakroom app binds sessions to devices
	// ([Options.DBSC]).
	DBSC bool
	// SessionCookie is the name of the cloakroom app's session cookie.
	SessionCookie string
	// SPKIPin is, with [Options.HTTPS] or DBSC, the base64 SHA-256 of the cloakroom
	// app's certificate's public key info: the value of Chromium's
	// --ignore-certificate-errors-spki-list. Empty otherwise.
	SPKIPin string

	jwtApp, cloakroomApp, vaultApp *guestbook.App
	attacker                       *attacker.Server
	jwtLog, cloakroomLog, vaultLog *requestLog
	vault                          *vault.Vault
	vaultSessions                  *cloakroom.Manager
	attackerLog                    *requestLog
	apiURL                         string         // the cloakroom app's upstream API, behind the gateway
	dbDir                          string         // the SQLite folder with Options.SQLite
	cert                           *localtls.Cert // the cloakroom app's, with Options.HTTPS

	servers   []*http.Server
	cleanups  []func() error
	closeOnce sync.Once
	closeErr  error
}

// Start starts the jwt app, the cloakroom app, the vault app and the
// attacker, and returns once all four accept connections. ctx bounds the start-up only;
// call [Lab.Close] to stop them.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	l := &Lab{CSP: opts.CSP, DBSC: opts.DBSC}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l.Admin = Credentials{AdminUser, opts.AdminPassword}
	l.Guest = Credentials{GuestUser, opts.GuestPassword}
	for _, c := range []*Credentials{&l.Admin, &l.Guest} {
		if c.Password == "" {
			c.Password = randomPassword()
		}
	}

	var listeners [4]net.Listener
	for i, addr := range []string{opts.JWTAddr, opts.CloakroomAddr, opts.AttackerAddr, opts.VaultAddr} {
		ln, err := listenLoopback(addr)
		if err != nil {
			return nil, err
		}
		l.cleanups = append(l.cleanups, ignoreClosed(ln.Close))
		listeners[i] = ln
	}
	port := func(ln net.Listener) string { return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) }
	l.JWTURL = "http://localhost:" + port(listeners[0])
	l.CloakroomURL = "http://localhost:" + port(listeners[1])
	if opts.HTTPS || opts.DBSC {
		if l.cert, err = localtls.New(); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		l.CloakroomURL = "https://localhost:" + port(listeners[1])
		l.SPKIPin = l.cert.SPKIPin
	}
	l.AttackerURL = "http://127.0.0.1:" + port(listeners[2])
	l.VaultURL = "http://localhost:" + port(listeners[3])
	l.Comment = attacker.Comment(l.AttackerURL)

	users := []guestbook.User{
		{Name: AdminUser, Password: l.Admin.Password, Email: "admin@guestbook.lab.test", Roles: []string{guestbook.AdminRole}},
		{Name: GuestUser, Password: l.Guest.Password, Email: "guest@guestbook.lab.test", Roles: []string{"guest"}},
	}
	if l.jwtApp, err = guestbook.New(guestbook.Config{Mode: guestbook.ModeJWT, Users: users}); err != nil {
		return nil, err
	}
	l.jwtLog = newRequestLog()
	l.serve(listeners[0], l.jwtLog.record(l.jwtApp.Handler()), logger)

	cloakroomHandler, err := l.startCloakroom(ctx, opts, users, logger)
	if err != nil {
		return nil, err
	}
	l.cloakroomLog = newRequestLog()
	cloakroomListener := listeners[1]
	if l.cert != nil {
		cloakroomListener = tls.NewListener(cloakroomListener, l.cert.ServerConfig())
	}
	l.serve(cloakroomListener, l.cloakroomLog.record(cloakroomHandler), logger)

	vaultHandler, err := l.startVault(ctx, users, logger)
	if err != nil {
		return nil, err
	}
	l.vaultLog = newRequestLog()
	l.serve(listeners[3], l.vaultLog.record(vaultHandler), logger)

	l.attacker, err = attacker.New(attacker.Config{
		BaseURL: l.AttackerURL,
		Targets: []attacker.Target{
			{Name: "jwt", URL: l.JWTURL},
			{Name: "cloakroom", URL: l.CloakroomURL, SessionCookie: l.SessionCookie},
			{Name: "vault", URL: l.VaultURL, SessionCookie: VaultSessionCookie},
		},
	})
	if err != nil {
		return nil, err
	}
	l.attackerLog = newRequestLog()
	l.serve(listeners[2], l.attackerLog.record(l.attacker.Handler()), logger)
	return l, nil
}

// startCloakroom builds the cloakroom app: the guestbook API on its own
// loopback port as the gateway's upstream, and the gateway serving the
// page. It returns the gateway's public handler.
func (l *Lab) startCloakroom(ctx context.Context, opts Options, users []guestbook.User, logger *slog.Logger) (http.Handler, error) {
	var (
		store        cloakroom.Store
		accountStore accounts.Store
	)
	if opts.SQLite {
		dir, err := os.MkdirTemp("", "cloakroom-lab-db-")
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		l.cleanups = append(l.cleanups, func() error { return os.RemoveAll(dir) })
		l.dbDir = dir
		sqlite, err := sqlitestore.Open(ctx, filepath.Join(dir, "lab.db"), sqlitestore.Config{})
		if err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		l.cleanups = append(l.cleanups, sqlite.Close)
		if accountStore, err = sqliteaccounts.New(ctx, sqlite.DB()); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
		store = sqlite
	} else {
		mem := memstore.New(memstore.Config{})
		l.cleanups = append(l.cleanups, mem.Close)
		store, accountStore = mem, memaccounts.New()
	}
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		return nil, err
	}
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: l.CloakroomURL, Audience: gatewayAudience})
	if err != nil {
		return nil, err
	}
	// The API believes the identity headers only next to a fresh assertion
	// signed by this gateway for the same user, so a local process that
	// finds the upstream port cannot just claim to be the admin.
	l.cloakroomApp, err = guestbook.New(guestbook.Config{
		Mode: guestbook.ModeCloakroom, Users: users,
		CheckGateway: func(r *http.Request) error {
			token, ok := bearer(r)
			if !ok {
				return errors.New("no gateway assertion")
			}
			claims, err := upstreamjwt.Verify(token, signer.JWKS(), gatewayAudience, time.Now())
			if err != nil {
				return err
			}
			if claims.Issuer != l.CloakroomURL || claims.Subject != r.Header.Get(guestbook.HeaderUser) {
				return errors.New("gateway assertion does not match the identity headers")
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	upstream, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.cleanups = append(l.cleanups, ignoreClosed(upstream.Close))
	l.serve(upstream, l.cloakroomApp.API(), logger)
	l.apiURL = "http://" + upstream.Addr().String()
	apiURL, _ := url.Parse(l.apiURL)

	static, err := l.staticDir(guestbook.PageConfig{Mode: guestbook.ModeCloakroom, CSP: opts.CSP})
	if err != nil {
		return nil, err
	}
	var binding *dbsc.Config
	if opts.DBSC {
		key := make([]byte, 32)
		rand.Read(key)
		binding = &dbsc.Config{Key: key, CookieLifetime: opts.BoundCookieLifetime}
	}
	st, err := gateway.Assemble(ctx, gateway.Parts{
		Sessions:     cloakroom.Config{Store: store, Logger: logger, CookieName: SessionCookieName},
		AccountStore: accountStore,
		Accounts:     accounts.Config{Throttle: memaccounts.NewThrottle(0), Logger: logger},
		Admission:    signin.Config{Logger: logger},
		Binding:      binding,
		Gateway: gateway.Config{
			Signer: signer,
			Routes: []proxy.Route{{Prefix: "/api/", Upstream: apiURL, Audience: gatewayAudience}},
			Static: static,
			// The page shows its own sign-in form, so its shell is public;
			// the API behind /api/ always needs a session.
			PublicPaths: []string{"/"},
			// The lab sets its own policy (withCSP) only with Options.CSP,
			// to show what a payload does with and without one.
			CSP: gateway.CSPOff,
		},
	})
	if err != nil {
		return nil, err
	}
	// Its stream watchers read the store: stopped before the store closes.
	l.cleanups = append(l.cleanups, st.Close)
	l.SessionCookie = st.Sessions.Config().CookieName
	for _, u := range users {
		if err := st.Accounts.Add(ctx, u.Name, u.Password, u.Roles, u.Email); err != nil {
			return nil, fmt.Errorf("lab: add demo user %s: %w", u.Name, err)
		}
	}
	var h http.Handler = st.Gateway.Handler()
	if opts.CSP {
		h = withCSP(h)
	}
	return h, nil
}

// staticDir writes the page's files for cfg into a temporary folder,
// removed by Close, for the gateway to serve.
func (l *Lab) staticDir(cfg guestbook.PageConfig) (string, error) {
	dir, err := os.MkdirTemp("", "cloakroom-lab-spa-")
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	l.cleanups = append(l.cleanups, func() error { return os.RemoveAll(dir) })
	if err := guestbook.WriteStatic(dir, cfg); err != nil {
		return "", err
	}
	return dir, nil
}

func bearer(r *http.Request) (string, bool) {
	const prefix = "Bearer "
	v := r.Header.Values("Authorization")
	if len(v) != 1 || len(v[0]) <= len(prefix) || v[0][:len(prefix)] != prefix {
		return "", false
	}
	return v[0][len(prefix):], true
}

// withCSP adds the lab's policy to every response that does not set its
// own (the gateway's built-in pages carry a stricter one).
func withCSP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", CSP)
		next.ServeHTTP(w, r)
	})
}

// serve runs an HTTP server with timeouts on ln until Close.
func (l *Lab) serve(ln net.Listener, h http.Handler, logger *slog.Logger) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	l.servers = append(l.servers, srv)
	go srv.Serve(ln)
}

// Client returns an HTTP client for requests from another machine, as an
// attacker's own program: it trusts the cloakroom app's certificate with
// [Options.HTTPS] or DBSC, keeps cookies in jar (nil: none) and does not follow
// redirects.
func (l *Lab) Client(jar http.CookieJar) *http.Client {
	if l.cert != nil {
		return l.cert.Client(jar)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Close stops the servers and removes the temporary files. It is safe to
// call more than once.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range l.servers {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		for i := len(l.cleanups) - 1; i >= 0; i-- {
			if err := l.cleanups[i](); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// listenLoopback listens on addr ("" means 127.0.0.1:0) after checking
// that its host is a loopback address.
func listenLoopback(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("lab: address %q: %w", addr, err)
	}
	if host == "localhost" {
		addr = net.JoinHostPort("127.0.0.1", addr[len(host)+1:])
	} else if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return ln, nil
}

func ignoreClosed(close func() error) func() error {
	return func() error {
		if err := close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}

// randomPassword returns a readable demo password: three groups of four
// lower-case letters and digits, 60 bits.
func randomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789" // 32 symbols, no look-alikes
	var b [12]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]%32]
	}
	return string(b[:4]) + "-" + string(b[4:8]) + "-" + string(b[8:])
}

// Instructions returns a short text that tells a person how to run the
// attack by hand against this lab, with its URLs and demo credentials.
func (l *Lab) Instructions() string {
	csp := "off"
	if l.CSP {
		csp = "on"
	}
	https := ""
	if l.SPKIPin != "" {
		https = "  The cloakroom app is on HTTPS with a throwaway certificate: start Chromium with\n" +
			"    --ignore-certificate-errors-spki-list=" + l.SPKIPin + "\n"
		if l.DBSC {
			https += "    --enable-features=DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting\n" +
				"  for device-bound sessions (Chrome 146+ on Windows has them without flags)\n"
		}
		https += "  (the payload, on plain HTTP, cannot load in that page).\n\n"
	}
	return "cloakroom lab: DELIBERATELY VULNERABLE apps, on loopback only\n\n" +
		"  jwt app        " + l.JWTURL + "   JWT in localStorage, sign-out deletes it there only\n" +
		"  cloakroom app  " + l.CloakroomURL + "   the same app behind the gateway (CSP " + csp + ")\n" +
		"  vault app      " + l.VaultURL + "   the jwt app unchanged, behind the gateway's token vault\n" +
		"  attacker       " + l.AttackerURL + "   what the payload stole, replayed; forged requests at /csrf\n\n" +
		https +
		"  users: " + l.Admin.Name + " / " + l.Admin.Password + "   " + l.Guest.Name + " / " + l.Guest.Password + "\n\n" +
		"  1. Sign in to an app as " + l.Guest.Name + " and post this comment:\n" +
		"       " + l.Comment + "\n" +
		"  2. In another browser profile or a private window, sign in to the same app as " + l.Admin.Name + ".\n" +
		"  3. Open the attacker's page: what was stolen, and does it work from elsewhere?\n" +
		"  4. Sign out as " + l.Admin.Name + ", then reload the attacker's page.\n" +
		"  5. Signed in as " + l.Admin.Name + ", open " + l.AttackerURL + "/csrf?target=cloakroom (or target=jwt).\n"
}
