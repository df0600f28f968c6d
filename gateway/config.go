package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
	"github.com/cloakroom/cloakroom/vault"
)

// ErrInvalidConfig wraps every problem [New] finds in a [Config].
var ErrInvalidConfig = errors.New("gateway: invalid configuration")

// DefaultAuthPrefix is where the login, logout, session and account
// endpoints live unless Config.AuthPrefix says otherwise.
const DefaultAuthPrefix = "/auth"

// MinAdminTokenLength is the shortest admin token New accepts: 32
// characters, 128 bits or more for a random hex or base64 token.
const MinAdminTokenLength = 32

// JWKSPath is where the signer's public keys are published.
const JWKSPath = "/.well-known/jwks.json"

// Config configures a [Gateway]. Sessions and Accounts are required; every
// other field is optional and its comment states the default.
type Config struct {
	// Sessions issues and checks session cookies. Required. Its middleware
	// wraps everything the public handler serves.
	Sessions *cloakroom.Manager
	// Admission turns every sign-in into a session, applying the rules
	// that hold for all of them (the session cap, the known-device cookie,
	// the authentication time; see package signin). Required, and the
	// same one the OIDC client and the vault admit through, on Sessions.
	Admission *signin.Admission
	// Accounts checks passwords. Required.
	Accounts *accounts.Service
	// Routes are the allowlisted API routes, each with its upstream mode
	// (see proxy.Mode; plain by default). The gateway proxies them with
	// the user's identity, keeping its own cookies (the session's and the
	// known-device one) from upstreams. Routed paths always need a
	// session, whatever PublicPaths says, except on a mode that takes
	// anonymous requests (the vault's). Default none.
	Routes []proxy.Route
	// Transport sends the requests of Routes upstream. Default
	// proxy.NewTransport().
	Transport http.RoundTripper
	// Vault is the token vault whose modes (see package vault) are
	// registered on Routes, for its metrics. Default nil.
	Vault *vault.Vault
	// Signer signs the internal JWT sent with the requests of Routes and
	// publishes its public keys at /.well-known/jwks.json. Default nil: no
	// JWT, no JWKS endpoint.
	Signer *upstreamjwt.Signer
	// Static is a folder holding the SPA: files are served as they are, and
	// paths without an extension get index.html (client-side routes).
	// Directory listings and dotfiles are never served, and symlinks cannot
	// escape the folder. Default "": no static files.
	Static string
	// Frontend is an upstream serving the SPA, used instead of Static. The
	// session cookie and client-sent identity headers never reach it.
	// Default nil. Setting both Static and Frontend is an error.
	Frontend *url.URL
	// AuthPrefix is the path under which the login, logout, session and
	// account endpoints live. Default "/auth".
	AuthPrefix string
	// PublicPaths are path prefixes of the SPA served without a session
	// (static assets, a public landing page). An entry matches itself and
	// the paths below it ("/assets" matches "/assets" and "/assets/app.js",
	// not "/assets2"); "/" makes the whole SPA public. Default none: the
	// SPA needs a session; only the login page, its stylesheet and the JWKS
	// are public.
	PublicPaths []string
	// AdminToken is the bearer token of the admin API, at least
	// MinAdminTokenLength characters. Default "": the admin API answers 404;
	// health, readiness and metrics stay available.
	AdminToken string
	// TLS says the public listener serves HTTPS; responses then carry
	// Strict-Transport-Security. Default false.
	TLS bool
	// Logger receives audit events (login attempts, logout, revocations,
	// admin actions). Sessions appear only as a prefix of their token's
	// SHA-256. Default slog.Default().
	Logger *slog.Logger
	// Metrics are the gateway's metrics (see [NewMetrics]), whose registry
	// /metrics serves; set the Sessions manager's configuration with them
	// first ([Metrics.ConfigureSessions]), so its lookups are timed and its
	// audit lines left to the gateway. Default: new metrics on a new
	// registry, without the manager's lookups.
	Metrics *Metrics
	// OIDC signs users in at OpenID providers: login buttons, the callback,
	// back-channel logout, token relay and step-up. Default nil: local
	// accounts only.
	OIDC *oidcbff.Client
	// Now is the clock used for displayed times and the step-up window.
	// Default time.Now.
	Now func() time.Time
	// StepUpWindow is how recent a login or password re-entry must be to
	// end one's other sessions (ASVS 7.5.2); older sessions must re-enter
	// the password first (POST {auth}/reauth, or the account page's
	// password field). Changing the password always needs the current one.
	// Default 5 minutes.
	StepUpWindow time.Duration
	// FactorRoutes are path prefixes (an API route such as "/api/admin/",
	// or a page) whose requests need a session signed in with a second
	// factor (amr otp, hwk, swk or mfa: a code, a recovery code, a
	// passkey, or a provider's second factor), whatever the user's role:
	// a session signed in with the password alone gets 403
	// second_factor_required, and signs in again with its factor. Each
	// must start with "/". Default none.
	FactorRoutes []string
	// CSP is the Content-Security-Policy of the SPA and its static files
	// (from Static or Frontend), to which the gateway adds report-uri (and,
	// with TLS, report-to) pointing at {auth}/csp-report. Default DefaultCSP
	// ("script-src 'self'; object-src 'none'; base-uri 'none';
	// frame-ancestors 'none'"); CSPOff sends none. The SPA also always
	// gets X-Content-Type-Options: nosniff and Referrer-Policy: same-origin.
	CSP string
	// CSPReportOnly sends the policy as Content-Security-Policy-Report-Only:
	// violations are reported, nothing is blocked. For rolling a policy
	// out. Default false: enforced.
	CSPReportOnly bool
	// BodyReadTimeout is how long a client may take to send the body of a
	// request to an auth endpoint (at most 8 KiB, read before the session
	// is loaded); a slower one gets 408. Default DefaultBodyReadTimeout
	// (10 s).
	BodyReadTimeout time.Duration
	// ForwardAuth answers the decision requests of the proxies in front
	// of other apps at {auth}/forward/ (see package forwardauth), outside
	// the session middleware: the decision runs the core's on the
	// original request. Its AuthPrefix must be this one. Default nil: no
	// forward-auth endpoints.
	ForwardAuth *forwardauth.Handler
	// Binder, when set, binds sessions to their browsers' keys (Device
	// Bound Session Credentials, package dbsc): the gateway serves its
	// registration and refresh endpoints (which must lie under
	// AuthPrefix), registers its metrics and keeps its bound cookie from
	// upstreams. The session manager's Binding must be Binder.Check and
	// the admission's Bind Binder.Offer; Assemble sets both. Default nil:
	// no binding.
	Binder *dbsc.Binder
}

// validate checks cfg and fills in defaults. It reports every problem, each
// wrapping ErrInvalidConfig.
func (cfg *Config) validate() error {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	cfg.checkParts(bad)
	if cfg.Static != "" && cfg.Frontend != nil {
		bad("Static and Frontend are exclusive: serve the SPA from a folder or from an upstream, not both")
	}
	if cfg.Static != "" {
		if err := checkStaticDir(cfg.Static); err != nil {
			bad("Static: %v", err)
		}
	}
	if cfg.Frontend != nil {
		if err := proxy.CheckUpstream(cfg.Frontend); err != nil {
			bad("Frontend: %v", err)
		}
	}
	if cfg.AuthPrefix == "" {
		cfg.AuthPrefix = DefaultAuthPrefix
	}
	if cfg.Binder != nil {
		bc := cfg.Binder.Config()
		for _, p := range []string{bc.RegisterPath, bc.RefreshPath} {
			if !httpx.PathUnder(p, cfg.AuthPrefix) {
				bad("Binder: endpoint %s is not under AuthPrefix %s", p, cfg.AuthPrefix)
			}
		}
	}
	if err := checkAuthPrefix(cfg.AuthPrefix); err != nil {
		bad("AuthPrefix %q: %v", cfg.AuthPrefix, err)
	} else if cfg.ForwardAuth != nil && cfg.ForwardAuth.Prefix() != cfg.AuthPrefix+"/forward/" {
		bad("ForwardAuth answers under %s, not under AuthPrefix %s", cfg.ForwardAuth.Prefix(), cfg.AuthPrefix)
	}
	for _, p := range cfg.PublicPaths {
		if err := checkPublicPath(p); err != nil {
			bad("PublicPaths %q: %v", p, err)
		}
	}
	if cfg.CSP != "" && cfg.CSP != CSPOff && (!printableWithSpaces(cfg.CSP) || strings.Contains(cfg.CSP, "report-")) {
		bad("CSP must be printable ASCII, and carry no report-uri or report-to (the gateway adds its own)")
	}
	if cfg.AdminToken != "" {
		switch {
		case len(cfg.AdminToken) < MinAdminTokenLength:
			bad("AdminToken is %d characters; use at least %d random ones", len(cfg.AdminToken), MinAdminTokenLength)
		case !printableASCII(cfg.AdminToken):
			bad("AdminToken must be printable ASCII without spaces (a trailing newline from the token file?)")
		}
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	return cfg.fillDefaults()
}

// checkParts checks that the parts the gateway is built from are there
// and fit together: one session manager, one admission every way in
// admits through, vault routes that are proxy routes.
func (cfg *Config) checkParts(bad func(format string, args ...any)) {
	if cfg.Sessions == nil {
		bad("Sessions is required")
	}
	for _, prefix := range cfg.FactorRoutes {
		if !strings.HasPrefix(prefix, "/") || len(prefix) > 1024 || strings.ContainsAny(prefix, " \t\r\n?#") {
			bad("FactorRoutes: %q is not a path prefix starting with /", prefix)
		}
	}
	if cfg.Accounts == nil {
		bad("Accounts is required")
	}
	switch {
	case cfg.Admission == nil:
		bad("Admission is required")
	case cfg.Admission.Sessions() != cfg.Sessions:
		bad("Admission admits to another session manager than Sessions")
	case cfg.OIDC != nil && cfg.OIDC.Admission() != cfg.Admission:
		bad("OIDC admits through another Admission than the gateway's")
	case cfg.Vault != nil && cfg.Vault.Admission() != cfg.Admission:
		bad("Vault admits through another Admission than the gateway's")
	}
}

// fillDefaults sets the defaults of the optional fields left empty.
func (cfg *Config) fillDefaults() error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		var err error
		if cfg.Metrics, err = NewMetrics(nil); err != nil {
			return err
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CSP == "" {
		cfg.CSP = DefaultCSP
	}
	if cfg.StepUpWindow <= 0 {
		cfg.StepUpWindow = DefaultStepUpWindow
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	return nil
}

func checkStaticDir(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	index, err := os.Stat(filepath.Join(dir, "index.html"))
	if err != nil || !index.Mode().IsRegular() {
		return fmt.Errorf("%s has no index.html", dir)
	}
	return nil
}

// checkAuthPrefix accepts a clean absolute path of plain segments, so that
// it can be spliced into ServeMux patterns and URLs as it is.
func checkAuthPrefix(p string) error {
	if p == "/" || !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return errors.New(`must start with "/", not end with "/", and not be "/"`)
	}
	if path.Clean(p) != p {
		return errors.New("must be a clean path")
	}
	for _, c := range p {
		ok := c == '/' || c == '-' || c == '_' || c == '.' ||
			('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
		if !ok {
			return fmt.Errorf("character %q not allowed (use letters, digits, '-', '_', '.')", c)
		}
	}
	if strings.Contains(p, "/.") {
		return errors.New("segments must not start with a dot")
	}
	return nil
}

func checkPublicPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New(`must start with "/"`)
	}
	if !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("must be valid UTF-8 without control characters")
	}
	trimmed := strings.TrimSuffix(p, "/")
	if trimmed != "" && path.Clean(trimmed) != trimmed {
		return errors.New("must be a clean path (no '//', '.' or '..' segments)")
	}
	return nil
}

func printableWithSpaces(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
