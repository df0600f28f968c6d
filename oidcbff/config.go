package oidcbff

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/signin"
)

// ErrInvalidConfig wraps every problem [New] finds in a [Config].
var ErrInvalidConfig = errors.New("oidcbff: invalid configuration")

// Defaults for [Config] and [ProviderConfig].
const (
	DefaultStateTTL        = 10 * time.Minute
	DefaultRefreshLeeway   = time.Minute
	DefaultLeaseTTL        = 15 * time.Second
	DefaultLogoutTokenAge  = 5 * time.Minute
	DefaultClockSkew       = time.Minute
	DefaultProviderTimeout = 10 * time.Second
	// DefaultCallbackLimit is how many callbacks a minute one client
	// address may have the token endpoint called for (the burst too).
	DefaultCallbackLimit = 20
	// DefaultJWKSRefetchInterval is the shortest time between two fetches
	// of a provider's keys.
	DefaultJWKSRefetchInterval = 10 * time.Second
	// StateCookieName is the pre-login cookie: __Host- makes browsers keep
	// it only when Secure, Path=/ and without Domain, so no sibling domain
	// can plant one.
	StateCookieName = "__Host-cloakroom-oidc"
)

// maxProviderName bounds a provider name, which appears in URLs and user IDs.
const maxProviderName = 32

// Sealer encrypts the tokens and the pre-login state at rest, binding each
// sealed value to its purpose with associated data. The token vault's
// keyring (internal/seal) implements it; a sealed value names its key, so
// keys rotate without logging anyone out.
type Sealer interface {
	Seal(plaintext, aad []byte) string
	Open(sealed string, aad []byte) ([]byte, error)
}

// ProviderConfig describes one OpenID provider. Name, Issuer, ClientID and
// ClientSecret are required; every other field's comment states its default.
type ProviderConfig struct {
	// Name identifies the provider in URLs ({auth}/login/{name}) and user
	// IDs ("{name}:{sub}"): 1 to 32 of [a-z0-9-]. Renaming a provider
	// changes its users' IDs.
	Name string
	// DisplayName labels the login button. Default: Name.
	DisplayName string
	// Issuer is the provider's issuer URL, used for discovery; it must match
	// the iss claim exactly. https, or http on a loopback host (tests).
	Issuer string
	// ClientID and ClientSecret are the gateway's registration at the
	// provider. Read the secret from a file; never log it.
	ClientID     string
	ClientSecret string
	// TokenAuth is how the client authenticates at the token endpoint:
	// "basic" (HTTP Basic, client_secret_basic), "post" (form fields,
	// client_secret_post) or "" to try Basic and fall back to the form once
	// per gateway process.
	TokenAuth string
	// Scopes requested. "openid" is always added. Default: openid, email,
	// profile. Add offline_access (or the provider's equivalent) to get a
	// refresh token.
	Scopes []string
	// AuthParams are extra parameters of the authorization request, such as
	// audience (Auth0: which API the access token is for) or access_type
	// (Google: offline, for a refresh token). Parameters the flow sets
	// itself are refused. Default none.
	AuthParams map[string]string
	// UserClaim names the claim that identifies the user. Default "sub",
	// the only one providers promise never to reassign.
	UserClaim string
	// EmailClaim, NameClaim and GroupsClaim name the claims forwarded
	// upstream as X-Forwarded-Email, the display name and
	// X-Forwarded-Groups. Defaults "email", "name", "groups".
	EmailClaim  string
	NameClaim   string
	GroupsClaim string
	// AllowedDomains limits sign-in to emails in these domains (exact
	// match, case-insensitive). An email the provider marks as not
	// verified (email_verified false) never matches. Default: any.
	AllowedDomains []string
	// AllowedGroups limits sign-in to members of at least one of these
	// groups. Default: any.
	AllowedGroups []string
	// RequiredClaims must all hold: the claim equals the value, or is a
	// list containing it. Default: none.
	RequiredClaims map[string]string
}

// StepUp requires a recent login for requests under Prefix: the session's
// authentication time (see package signin: the provider's auth_time, a
// login started with prompt=login, a local password) must be at most
// MaxAge old; an unknown one is never recent. Older sessions are sent to
// log in again with max_age and prompt=login.
type StepUp struct {
	Prefix string
	MaxAge time.Duration
}

// Config configures a [Client]. Providers, Admission, PublicURL and Sealer
// are required; every other field's comment states its default.
type Config struct {
	Providers []ProviderConfig
	// Admission starts the sessions of the provider's users, with the
	// rules every sign-in follows (package signin). Its session manager's
	// store also keeps the sealed tokens, the refresh leases and the
	// logout indexes, as auxiliary records.
	Admission *signin.Admission
	// PublicURL is the gateway's external origin, such as
	// https://app.example.com, used to build the redirect URIs registered
	// at the provider: {PublicURL}{AuthPrefix}/callback/{name} and
	// {PublicURL}{AuthPrefix}/login after logout. It is configured rather
	// than taken from the Host header, which a client controls.
	PublicURL string
	// AuthPrefix is the gateway's auth prefix. Default "/auth".
	AuthPrefix string
	// Sealer encrypts tokens and the pre-login state. Required.
	Sealer Sealer
	// StepUp lists the route prefixes that need a recent login.
	StepUp []StepUp
	// StateTTL bounds how long a login may take at the provider. Default 10
	// minutes.
	StateTTL time.Duration
	// RefreshLeeway is how long before its expiry an access token is
	// refreshed. Default one minute.
	RefreshLeeway time.Duration
	// LeaseTTL bounds how long one node may hold a session's refresh lease
	// before another may take over (the holder crashed). Default 15 s; the
	// refresh call itself times out before it.
	LeaseTTL time.Duration
	// LogoutTokenMaxAge is how old (iat) a back-channel logout token may be.
	// Default 5 minutes; replays inside the window are refused by jti.
	LogoutTokenMaxAge time.Duration
	// ClockSkew tolerated with the provider's clock. Default one minute.
	ClockSkew time.Duration
	// CallbackLimit is how many callbacks a minute one client address
	// (the session manager's reading of it; an IPv6 address by its /64)
	// may have the provider's token endpoint called for, with the client's
	// credentials; more are answered 429 without calling it. Anyone can
	// get a pre-login cookie, so without a limit anyone could make the
	// gateway call the provider at will. Default DefaultCallbackLimit (20);
	// negative: no limit.
	CallbackLimit int
	// JWKSRefetchInterval is the shortest time between two fetches of a
	// provider's keys. A token whose key the gateway does not have (a
	// forged back-channel logout token, say) makes it fetch them again:
	// without a bound, each anonymous request would cost one fetch.
	// Default DefaultJWKSRefetchInterval (10 s); it must be positive.
	JWKSRefetchInterval time.Duration
	// HTTPClient calls the providers. Default: a client with a 10 s timeout
	// that does not follow a proxy from the environment.
	HTTPClient *http.Client
	// Logger receives audit events. Tokens never appear in it. Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (cfg *Config) validate() error {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if len(cfg.Providers) == 0 {
		bad("at least one provider is required")
	}
	if cfg.Admission == nil {
		bad("Admission is required")
	}
	if cfg.Sealer == nil {
		bad("Sealer is required: tokens are kept encrypted")
	}
	if err := checkPublicURL(cfg.PublicURL); err != nil {
		bad("PublicURL %q: %v", cfg.PublicURL, err)
	}
	if cfg.AuthPrefix == "" {
		cfg.AuthPrefix = "/auth"
	}
	seen := map[string]bool{}
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		for _, err := range p.check() {
			bad("provider %q: %v", p.Name, err)
		}
		if seen[p.Name] {
			bad("provider %q is configured twice", p.Name)
		}
		seen[p.Name] = true
	}
	for _, su := range cfg.StepUp {
		if err := CheckStepUp(cfg.AuthPrefix, su); err != nil {
			bad("%v", err)
		}
	}
	def := func(d *time.Duration, v time.Duration, name string) {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			bad("%s must not be negative", name)
		}
	}
	def(&cfg.StateTTL, DefaultStateTTL, "StateTTL")
	def(&cfg.RefreshLeeway, DefaultRefreshLeeway, "RefreshLeeway")
	def(&cfg.LeaseTTL, DefaultLeaseTTL, "LeaseTTL")
	def(&cfg.LogoutTokenMaxAge, DefaultLogoutTokenAge, "LogoutTokenMaxAge")
	def(&cfg.ClockSkew, DefaultClockSkew, "ClockSkew")
	def(&cfg.JWKSRefetchInterval, DefaultJWKSRefetchInterval, "JWKSRefetchInterval")
	if cfg.CallbackLimit == 0 {
		cfg.CallbackLimit = DefaultCallbackLimit
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	if cfg.HTTPClient == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		cfg.HTTPClient = &http.Client{Timeout: DefaultProviderTimeout, Transport: t}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// Check validates p, filling in its defaults, without contacting the
// provider: what `cloakroom serve --check-config` reports.
func (p *ProviderConfig) Check() error {
	var errs []error
	for _, err := range p.check() {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
	}
	return errors.Join(errs...)
}

// CheckStepUp validates a step-up rule for a gateway whose auth prefix is
// authPrefix: a path prefix, at least a minute, and not covering the
// endpoints that logging in again needs.
func CheckStepUp(authPrefix string, su StepUp) error {
	if !strings.HasPrefix(su.Prefix, "/") {
		return fmt.Errorf("step-up prefix %q must be a path prefix such as /api/admin/", su.Prefix)
	}
	for _, p := range []string{"/login", "/login/x", "/callback/x", "/backchannel-logout/x", "/logout", "/session", "/assets/x"} {
		if httpx.PathUnder(authPrefix+p, su.Prefix) {
			return fmt.Errorf("step-up prefix %q covers %s%s, which logging in again needs", su.Prefix, authPrefix, strings.TrimSuffix(p, "/x"))
		}
	}
	if su.MaxAge < time.Minute {
		return fmt.Errorf("step-up max age %v for %s is below one minute", su.MaxAge, su.Prefix)
	}
	return nil
}

// CheckPublicURL validates a Config.PublicURL.
func CheckPublicURL(raw string) error { return checkPublicURL(raw) }

// check validates p and fills in its defaults.
func (p *ProviderConfig) check() []error {
	var errs []error
	if !validProviderName(p.Name) {
		errs = append(errs, fmt.Errorf("name must be 1 to %d of a-z, 0-9 and '-'", maxProviderName))
	}
	if err := checkIssuer(p.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer %q: %w", p.Issuer, err))
	}
	if p.ClientID == "" {
		errs = append(errs, errors.New("client id is required"))
	}
	if p.ClientSecret == "" {
		errs = append(errs, errors.New("client secret is required (read from a file)"))
	}
	for k := range p.AuthParams {
		switch k {
		case "", "client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
			"code_challenge", "code_challenge_method", "max_age", "prompt", "response_mode", "request", "request_uri":
			errs = append(errs, fmt.Errorf("auth param %q is set by the login flow itself", k))
		}
	}
	switch p.TokenAuth {
	case "", "basic", "post":
	default:
		errs = append(errs, fmt.Errorf("token auth %q is not basic or post", p.TokenAuth))
	}
	if p.DisplayName == "" {
		p.DisplayName = p.Name
	}
	if len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "email", "profile"}
	}
	if !slices.Contains(p.Scopes, "openid") {
		p.Scopes = append([]string{"openid"}, p.Scopes...)
	}
	for _, s := range p.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			errs = append(errs, fmt.Errorf("scope %q is not a valid scope token", s))
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&p.UserClaim, "sub")
	def(&p.EmailClaim, "email")
	def(&p.NameClaim, "name")
	def(&p.GroupsClaim, "groups")
	for i, d := range p.AllowedDomains {
		d = strings.ToLower(strings.TrimPrefix(d, "@"))
		if d == "" || strings.ContainsAny(d, "@ /") {
			errs = append(errs, fmt.Errorf("allowed domain %q is not a domain name", d))
		}
		p.AllowedDomains[i] = d
	}
	for claim := range p.RequiredClaims {
		if claim == "" {
			errs = append(errs, errors.New("a required claim has an empty name"))
		}
	}
	return errs
}

func validProviderName(s string) bool {
	if s == "" || len(s) > maxProviderName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkIssuer accepts https URLs, and http ones on a loopback host only:
// discovery and keys fetched in clear text could be forged on a network.
func checkIssuer(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be an absolute https URL without userinfo, query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return errors.New("http is allowed on a loopback host only; use https")
		}
	default:
		return errors.New("scheme must be https")
	}
	return nil
}

func checkPublicURL(raw string) error {
	if raw == "" {
		return errors.New("is required: the redirect URIs registered at the provider are built from it")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return errors.New("must be an origin such as https://app.example.com (no path, query or userinfo)")
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return errors.New("must be https (http only on a loopback host): the session cookie is Secure")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
