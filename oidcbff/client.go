package oidcbff

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/internal/ratelimit"
	"github.com/cloakroom/cloakroom/signin"
)

// Session values of the provider's sign-in, beside those the sign-in
// rules write (email, name, roles, the authentication time: package
// signin).
const (
	ValueProvider = "oidc_provider"
	ValueSubject  = "oidc_sub"
	ValueSID      = "oidc_sid"
	ValueRef      = "oidc_ref" // names the sealed token record
)

// Associated data binding sealed values to their purpose.
const (
	aadState  = "cloakroom/oidcbff/state"
	aadTokens = "cloakroom/oidcbff/tokens/"
	aadIndex  = "cloakroom/oidcbff/index/"
)

// Client is the gateway's OpenID Connect client. Create one with [New]; it
// is safe for concurrent use.
type Client struct {
	cfg       Config
	providers map[string]*provider
	order     []string // providers in configuration order, for the buttons
	admission *signin.Admission
	sessions  *cloakroom.Manager
	records   records
	log       *slog.Logger
	now       func() time.Time
	node      string // this process, in lease records

	flights flightGroup // one refresh per session in this process
	cache   tokenCache  // access tokens already read, until they near expiry
	// callbacks bounds the token endpoint calls made for each client
	// address (nil: no limit).
	callbacks *ratelimit.Keyed
}

// callbackClients is how many client addresses the callback limit
// remembers: a fixed table, so that many addresses cannot grow memory.
const callbackClients = 4096

type provider struct {
	cfg            ProviderConfig
	op             *oidc.Provider
	oauth          oauth2.Config
	verifier       *oidc.IDTokenVerifier
	logoutVerifier *oidc.IDTokenVerifier
	endSession     string // "" when the provider has none
	userInfo       bool
}

// New validates cfg and runs discovery for every provider. It fails when a
// provider cannot be reached or its discovery document is wrong, so that a
// misconfigured gateway stops at startup rather than at the first login.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:       cfg,
		providers: make(map[string]*provider, len(cfg.Providers)),
		admission: cfg.Admission,
		sessions:  cfg.Admission.Sessions(),
		records:   records{store: cfg.Admission.Sessions().Store(), now: cfg.Now},
		log:       cfg.Logger,
		now:       cfg.Now,
		node:      randomID(),
	}
	c.flights.calls = make(map[string]*flight)
	c.cache.entries = make(map[string]cachedToken)
	if cfg.CallbackLimit > 0 {
		c.callbacks = ratelimit.NewKeyed(callbackClients,
			ratelimit.Rate{PerSec: float64(cfg.CallbackLimit) / 60, Burst: float64(cfg.CallbackLimit)})
	}
	ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	var problems []error
	for _, pc := range cfg.Providers {
		p, err := c.discover(ctx, pc)
		if err != nil {
			problems = append(problems, fmt.Errorf("provider %q: discovery at %s failed: %w", pc.Name, pc.Issuer, err))
			continue
		}
		c.providers[pc.Name] = p
		c.order = append(c.order, pc.Name)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return c, nil
}

func (c *Client) discover(ctx context.Context, pc ProviderConfig) (*provider, error) {
	op, err := oidc.NewProvider(ctx, pc.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		EndSession string   `json:"end_session_endpoint"`
		PKCE       []string `json:"code_challenge_methods_supported"`
		UserInfo   string   `json:"userinfo_endpoint"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, err
	}
	if len(meta.PKCE) > 0 && !contains(meta.PKCE, "S256") {
		return nil, fmt.Errorf("the provider does not support PKCE with S256 (it lists %v)", meta.PKCE)
	}
	if meta.EndSession != "" {
		if u, err := url.Parse(meta.EndSession); err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			return nil, fmt.Errorf("end_session_endpoint %q is not an https URL", meta.EndSession)
		}
	}
	endpoint := op.Endpoint()
	switch pc.TokenAuth {
	case "basic":
		endpoint.AuthStyle = oauth2.AuthStyleInHeader
	case "post":
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	// One key set for ID and logout tokens, fetched through a client that
	// refetches at most once per JWKSRefetchInterval: go-oidc fetches the
	// keys again for every token its cached keys do not verify, and
	// anyone can post a logout token.
	keysClient := *c.cfg.HTTPClient
	keysClient.Transport = &refetchLimiter{next: keysClient.Transport, every: c.cfg.JWKSRefetchInterval, now: c.now}
	verifier := op.VerifierContext(oidc.ClientContext(ctx, &keysClient), &oidc.Config{ClientID: pc.ClientID, Now: c.now})
	p := &provider{
		cfg: pc,
		op:  op,
		oauth: oauth2.Config{
			ClientID: pc.ClientID, ClientSecret: pc.ClientSecret, Endpoint: endpoint,
			RedirectURL: c.callbackURL(pc.Name), Scopes: pc.Scopes,
		},
		verifier:       verifier,
		logoutVerifier: verifier,
		endSession:     meta.EndSession,
		userInfo:       meta.UserInfo != "",
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (c *Client) callbackURL(name string) string {
	return strings.TrimSuffix(c.cfg.PublicURL, "/") + c.cfg.AuthPrefix + "/callback/" + name
}

// PostLogoutURL is where a provider sends the browser after logout; register
// it at the provider as the post-logout redirect URI.
func (c *Client) PostLogoutURL() string {
	return strings.TrimSuffix(c.cfg.PublicURL, "/") + c.cfg.AuthPrefix + "/login"
}

// CallbackURL is the redirect URI to register at the provider called name.
func (c *Client) CallbackURL(name string) string { return c.callbackURL(name) }

// ProviderLink is a login button.
type ProviderLink struct {
	Name        string
	DisplayName string
	URL         string // a local path: {auth}/login/{name}?return_to=...
}

// Links returns one login button per provider, in configuration order,
// each coming back to returnTo (already sanitised) after login.
func (c *Client) Links(returnTo string) []ProviderLink {
	out := make([]ProviderLink, 0, len(c.order))
	for _, name := range c.order {
		p := c.providers[name]
		u := c.cfg.AuthPrefix + "/login/" + name
		if returnTo != "" && returnTo != "/" {
			u += "?return_to=" + url.QueryEscape(returnTo)
		}
		out = append(out, ProviderLink{Name: name, DisplayName: p.cfg.DisplayName, URL: u})
	}
	return out
}

// Register adds the login, callback and back-channel logout endpoints to mux
// under the auth prefix. The mux must be served behind the session
// middleware.
func (c *Client) Register(mux *http.ServeMux, page PageFunc) {
	if page == nil {
		page = c.defaultPage
	}
	a := c.cfg.AuthPrefix
	mux.HandleFunc("GET "+a+"/login/{provider}", func(w http.ResponseWriter, r *http.Request) { c.startLogin(w, r, page) })
	mux.HandleFunc("GET "+a+"/callback/{provider}", func(w http.ResponseWriter, r *http.Request) { c.callback(w, r, page) })
	mux.HandleFunc("POST "+a+"/backchannel-logout/{provider}", c.backchannelLogout)
}

// loginState is the sealed content of the pre-login cookie.
type loginState struct {
	Provider  string `json:"p"`
	State     string `json:"s"`
	Nonce     string `json:"n"`
	Verifier  string `json:"v"`
	ReturnTo  string `json:"r"`
	MaxAge    int64  `json:"m,omitempty"` // seconds, when HasMaxAge
	HasMaxAge bool   `json:"h,omitempty"` // max_age was requested: auth_time is then required
	Prompt    bool   `json:"l,omitempty"` // prompt=login was sent: the provider authenticates the user anew
	Created   int64  `json:"t"`           // unix seconds
}

// maxAgeLimit bounds the max_age parameter.
const maxAgeLimit = 24 * 60 * 60

// startLogin redirects to the provider's authorization endpoint.
func (c *Client) startLogin(w http.ResponseWriter, r *http.Request, page PageFunc) {
	p, ok := c.providers[r.PathValue("provider")]
	if !ok {
		page(w, r, http.StatusNotFound, "No such sign-in provider.")
		return
	}
	// A login is a top-level navigation; script cannot follow the
	// provider's pages anyway, and a fetch would only leak the redirect.
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" {
		page(w, r, http.StatusBadRequest, "Start the sign-in by opening this address in the browser, not from script.")
		return
	}
	q := r.URL.Query()
	var maxAge int64
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > maxAgeLimit {
			page(w, r, http.StatusBadRequest, fmt.Sprintf("max_age must be a number of seconds from 0 to %d.", maxAgeLimit))
			return
		}
		maxAge = n
	}
	promptLogin := false
	switch q.Get("prompt") {
	case "":
	case "login":
		promptLogin = true
	default:
		page(w, r, http.StatusBadRequest, "prompt may only be login.")
		return
	}
	st := loginState{
		Provider: p.cfg.Name, State: randomID(), Nonce: randomID(), Verifier: oauth2.GenerateVerifier(),
		ReturnTo: httpx.SafeReturnTo(q.Get("return_to")), MaxAge: maxAge, HasMaxAge: q.Has("max_age"),
		Created: c.now().Unix(),
	}
	if q.Has("max_age") && maxAge == 0 {
		// max_age=0 means "authenticate now": ask for it both ways, as
		// providers honour one or the other.
		promptLogin = true
	}
	st.Prompt = promptLogin
	opts := []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	for k, v := range p.cfg.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if q.Has("max_age") {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(maxAge, 10)))
	}
	if promptLogin {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	plain, _ := json.Marshal(st) // plain strings and numbers always encode
	http.SetCookie(w, &http.Cookie{
		Name: StateCookieName, Value: c.cfg.Sealer.Seal(plain, []byte(aadState)),
		Path: "/", MaxAge: int(c.cfg.StateTTL / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Location", p.oauth.AuthCodeURL(st.State, opts...))
	w.WriteHeader(http.StatusSeeOther)
	c.log.LogAttrs(r.Context(), slog.LevelInfo, "oidc login started", slog.String("provider", p.cfg.Name))
}

// expireStateCookie removes the pre-login cookie: each state serves once.
func expireStateCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: StateCookieName, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// readState opens the pre-login cookie.
func (c *Client) readState(r *http.Request) (loginState, error) {
	var st loginState
	// Read as the session cookie is: a repeated one may be planted.
	value, err := cloakroom.CookieValue(r.Header, StateCookieName)
	switch {
	case errors.Is(err, cloakroom.ErrNoCookie):
		return st, errors.New("no pre-login cookie")
	case err != nil:
		return st, fmt.Errorf("pre-login cookie refused: %w", err)
	}
	if len(value) > 4096 {
		return st, errors.New("pre-login cookie too large")
	}
	plain, err := c.cfg.Sealer.Open(value, []byte(aadState))
	if err != nil {
		return st, fmt.Errorf("pre-login cookie does not open: %w", err)
	}
	if err := json.Unmarshal(plain, &st); err != nil {
		return st, fmt.Errorf("pre-login cookie: %w", err)
	}
	age := c.now().Sub(time.Unix(st.Created, 0))
	if age > c.cfg.StateTTL || age < -c.cfg.ClockSkew {
		return st, errors.New("pre-login cookie expired")
	}
	return st, nil
}

// Outcomes of a callback, for the audit log.
const (
	outcomeSuccess = "success"
	outcomeRefused = "refused"
	outcomeInvalid = "invalid"
	outcomeError   = "error"
)

// callback completes the login.
func (c *Client) callback(w http.ResponseWriter, r *http.Request, page PageFunc) {
	ctx := r.Context()
	name := knownName(c, r.PathValue("provider"))
	audit := func(outcome, reason string, attrs ...slog.Attr) {
		c.log.LogAttrs(ctx, slog.LevelInfo, "oidc login", append([]slog.Attr{
			slog.String("outcome", outcome), slog.String("provider", name), slog.String("reason", reason),
			slog.String("client_ip", c.sessions.Config().ClientIP(r)),
		}, attrs...)...)
	}
	expireStateCookie(w)
	p, ok := c.providers[r.PathValue("provider")]
	if !ok {
		page(w, r, http.StatusNotFound, "No such sign-in provider.")
		return
	}
	q := r.URL.Query()
	restart := "This sign-in link has expired or was opened in another browser. Start the sign-in again."
	st, err := c.readState(r)
	if err != nil {
		audit(outcomeInvalid, err.Error())
		page(w, r, http.StatusBadRequest, restart)
		return
	}
	if st.Provider != p.cfg.Name || len(q["state"]) != 1 ||
		subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		audit(outcomeInvalid, "state does not match the pre-login cookie")
		page(w, r, http.StatusBadRequest, restart)
		return
	}
	if code := q.Get("error"); code != "" {
		audit(outcomeRefused, "provider returned error "+safeCode(code))
		status := http.StatusBadRequest
		if code == "access_denied" || code == "login_required" {
			status = http.StatusForbidden
		}
		page(w, r, status, fmt.Sprintf("%s did not sign you in (%s).", p.cfg.DisplayName, safeCode(code)))
		return
	}
	code := q.Get("code")
	if code == "" || len(q["code"]) != 1 || len(code) > 4096 {
		audit(outcomeInvalid, "no authorization code")
		page(w, r, http.StatusBadRequest, restart)
		return
	}
	// Anyone can get a pre-login cookie: the token endpoint, called with
	// the client's credentials, is called a bounded number of times per
	// client address, and once per cookie.
	if c.callbacks != nil && !c.callbacks.Allow(ratelimit.ClientKey(c.sessions.Config().ClientIP(r)), c.now()) {
		audit(outcomeRefused, "too many callbacks from this address")
		w.Header().Set("Retry-After", strconv.Itoa(max(1, 60/c.cfg.CallbackLimit)))
		page(w, r, http.StatusTooManyRequests, "Too many sign-ins from your network. Wait a minute, then start the sign-in again.")
		return
	}
	if err := c.useState(ctx, p, st); err != nil {
		if errors.Is(err, cloakroom.ErrConflict) {
			audit(outcomeInvalid, "pre-login state already used")
			page(w, r, http.StatusBadRequest, restart)
			return
		}
		audit(outcomeError, "session store unavailable", slog.String("error", err.Error()))
		page(w, r, http.StatusServiceUnavailable, "Signing in is not possible right now. Try again shortly.")
		return
	}
	// Pinned before the provider is asked: a global revocation while it
	// answers makes this login fail rather than outlive it.
	pin, err := c.sessions.PinEpoch(ctx)
	if err != nil {
		audit(outcomeError, "session store unavailable", slog.String("error", err.Error()))
		page(w, r, http.StatusServiceUnavailable, "Signing in is not possible right now. Try again shortly.")
		return
	}
	pctx := oidc.ClientContext(ctx, c.cfg.HTTPClient)
	pctx = context.WithValue(pctx, oauth2.HTTPClient, c.cfg.HTTPClient)
	tok, err := p.oauth.Exchange(pctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			audit(outcomeInvalid, "token endpoint refused the code", slog.Int("status", re.Response.StatusCode), slog.String("error", safeCode(re.ErrorCode)))
			page(w, r, http.StatusBadRequest, "The sign-in could not be completed. Start it again.")
			return
		}
		audit(outcomeError, "token endpoint unreachable", slog.String("error", redact(err)))
		page(w, r, http.StatusBadGateway, p.cfg.DisplayName+" cannot be reached right now. Try again shortly.")
		return
	}
	id, err := c.verifyLogin(pctx, p, tok, code, st)
	if err != nil {
		audit(outcomeInvalid, err.Error())
		page(w, r, http.StatusBadRequest, "The answer from "+p.cfg.DisplayName+" could not be verified. Start the sign-in again.")
		return
	}
	if reason := p.allowed(id); reason != "" {
		audit(outcomeRefused, reason, slog.String("user", id.User))
		page(w, r, http.StatusForbidden, fmt.Sprintf("Your %s account (%s) is not allowed to use this application. Sign in with another account, or ask an administrator for access.", p.cfg.DisplayName, id.display()))
		return
	}
	deadline := time.Unix(st.Created, 0).Add(c.cfg.StateTTL + c.cfg.ClockSkew)
	if err := c.startSession(ctx, r, w.Header(), p, id, tok, pin, deadline); err != nil {
		if errors.Is(err, signin.ErrSecondFactorRequired) {
			audit(outcomeRefused, "role requires a second factor the provider did not report", slog.String("user", id.User), slog.String("amr", strings.Join(id.AMR, " ")))
			page(w, r, http.StatusForbidden, "Your role here requires signing in at "+p.cfg.DisplayName+" with a second factor (an authenticator app or a security key), and "+p.cfg.DisplayName+" did not report one. Turn on two-step verification there, then sign in again.")
			return
		}
		if errors.Is(err, errLoggedOutDuringLogin) || errors.Is(err, errLoginTooSlow) || errors.Is(err, signin.ErrChangedMeanwhile) {
			audit(outcomeRefused, err.Error(), slog.String("user", id.User))
			page(w, r, http.StatusUnauthorized, "You were signed out at "+p.cfg.DisplayName+" while signing in here, or the sign-in took too long. Start the sign-in again.")
			return
		}
		audit(outcomeError, "session not created", slog.String("error", err.Error()))
		page(w, r, http.StatusServiceUnavailable, "Signing in is not possible right now. Try again shortly.")
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Location", st.ReturnTo)
	w.WriteHeader(http.StatusSeeOther)
	audit(outcomeSuccess, "", slog.String("user", id.User), slog.String("session", c.sessions.Session(r).Ref()))
}

// useState records st's state as used, for as long as its cookie could be
// accepted: the callback of a pre-login cookie calls the token endpoint
// once, however often the cookie is replayed. It fails with
// cloakroom.ErrConflict (wrapped) when the state was used already.
func (c *Client) useState(ctx context.Context, p *provider, st loginState) error {
	ttl := c.cfg.StateTTL + 2*c.cfg.ClockSkew
	_, err := c.records.create(ctx, recordKey(kindState, indexID(p.cfg.Name, st.State)), []byte("used"), ttl, false)
	return err
}

// refetchLimiter is the transport of a provider's key set fetches: at most
// one request per interval reaches the provider; the others fail at once,
// and the keys already fetched stay in use.
type refetchLimiter struct {
	next  http.RoundTripper // nil: http.DefaultTransport
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	last  time.Time // of the last fetch let through; zero: none yet
}

// errRefetchTooSoon refuses a key set fetch inside the interval.
var errRefetchTooSoon = errors.New("oidcbff: the provider's keys were fetched moments ago")

func (l *refetchLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	l.mu.Lock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every && now.Sub(l.last) >= 0 {
		l.mu.Unlock()
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, errRefetchTooSoon
	}
	l.last = now
	l.mu.Unlock()
	next := l.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(req)
}

// knownName returns name if it is a configured provider's, for logs: a
// path segment is the client's to choose.
func knownName(c *Client, name string) string {
	if _, ok := c.providers[name]; ok {
		return name
	}
	return "(unknown)"
}

// safeCode keeps an OAuth error code printable and short for logs and pages.
func safeCode(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r >= 0x20 && r < 0x7f && r != '<' && r != '>' && r != '&' && r != '"' {
			return r
		}
		return '?'
	}, s)
}

// redact removes URLs from an error message: a token endpoint URL carries
// no secret, but query strings in general might.
func redact(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + ue.Err.Error()
	}
	return err.Error()
}

// verifyLogin checks the ID token from the token response against the
// pre-login state and returns the user's identity.
func (c *Client) verifyLogin(ctx context.Context, p *provider, tok *oauth2.Token, code string, st loginState) (identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return identity{}, errors.New("token response has no id_token")
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return identity{}, fmt.Errorf("id token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return identity{}, errors.New("id token nonce does not match")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return identity{}, errors.New("id token at_hash does not match the access token")
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return identity{}, fmt.Errorf("id token claims: %w", err)
	}
	if ch, ok := claims["c_hash"].(string); ok {
		// Same left-half hash as at_hash, over the code; go-oidc computes it.
		withCode := *idt
		withCode.AccessTokenHash = ch
		if withCode.VerifyAccessToken(code) != nil {
			return identity{}, errors.New("id token c_hash does not match the code")
		}
	}
	if azp, ok := claims["azp"].(string); ok && azp != p.cfg.ClientID {
		return identity{}, errors.New("id token azp is another client")
	}
	if len(idt.Audience) > 1 {
		if azp, _ := claims["azp"].(string); azp != p.cfg.ClientID {
			return identity{}, errors.New("id token has several audiences and no azp naming this client")
		}
	}
	// When the user authenticated, for step-up: the provider's auth_time;
	// without it, the completion of a login the gateway started with
	// prompt=login (the provider had to authenticate the user anew);
	// otherwise unknown, which is never recent: a silent login reuses a
	// provider session of any age. A future auth_time is refused.
	// For back-channel logout the login counts from the earlier of its
	// start and the ID token's iat: the ID token is issued when the code
	// is redeemed, which can be after a logout that ended the provider
	// session the code came from.
	now := c.now()
	var authTime time.Time
	if st.Prompt {
		authTime = now
	}
	authenticated := idt.IssuedAt
	if started := time.Unix(st.Created, 0); started.Before(authenticated) {
		authenticated = started
	}
	if at, ok := numericClaim(claims["auth_time"]); ok {
		authTime = time.Unix(at, 0)
		if authTime.After(now.Add(c.cfg.ClockSkew)) {
			return identity{}, errors.New("auth_time is in the future")
		}
		authenticated = authTime
	} else if st.HasMaxAge {
		return identity{}, errors.New("max_age was requested but the id token has no auth_time")
	}
	if st.HasMaxAge && now.Sub(authTime) > time.Duration(st.MaxAge)*time.Second+c.cfg.ClockSkew {
		return identity{}, errors.New("auth_time is older than the requested max_age")
	}
	if p.userInfo && p.needsUserInfo(claims) {
		ui, err := p.op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return identity{}, fmt.Errorf("userinfo: %s", redact(err))
		}
		var extra map[string]any
		if err := ui.Claims(&extra); err != nil {
			return identity{}, fmt.Errorf("userinfo claims: %w", err)
		}
		if ui.Subject != idt.Subject {
			return identity{}, errors.New("userinfo sub differs from the id token's")
		}
		for k, v := range extra {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	id, err := p.identity(claims)
	if err != nil {
		return identity{}, err
	}
	id.Subject = idt.Subject
	id.SID, _ = claims["sid"].(string)
	id.AuthTime = authTime
	id.Authenticated = authenticated
	id.AMR = amrClaim(claims["amr"])
	id.IDToken = raw
	return id, nil
}

func numericClaim(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

// EndSessionOrigins lists the origins of the providers' end_session
// endpoints, where a form logout redirects the browser: a page whose
// Content-Security-Policy restricts form-action must allow them, or the
// browser stops the logout's redirect on its way to the provider.
func (c *Client) EndSessionOrigins() []string {
	var out []string
	for _, name := range c.order {
		u, err := url.Parse(c.providers[name].endSession)
		if err != nil || u.Host == "" {
			continue
		}
		o := u.Scheme + "://" + u.Host
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// Admission returns the admission the client signs users in through.
func (c *Client) Admission() *signin.Admission { return c.admission }

// PageFunc shows a message to a person: a refused or failed sign-in. The
// gateway gives its own, the login page with the message, to Register.
type PageFunc func(w http.ResponseWriter, r *http.Request, status int, message string)

// defaultPage answers a browser with a short message page, for a client
// registered without a page of the caller's.
func (c *Client) defaultPage(w http.ResponseWriter, r *http.Request, status int, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = errorPage.Execute(w, struct{ Message, Login string }{message, c.cfg.AuthPrefix + "/login"})
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<meta charset="utf-8"><title>Sign in</title>
<p id="error" role="alert">{{.Message}}</p>
<p><a href="{{.Login}}">Back to sign in</a></p>
`))

// flightGroup runs one refresh per session at a time in this process.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done  chan struct{}
	token string
	err   error
}

// do runs fn once for concurrent callers with the same key.
func (g *flightGroup) do(key string, fn func() (string, error)) (string, error) {
	g.mu.Lock()
	if f, ok := g.calls[key]; ok {
		g.mu.Unlock()
		<-f.done
		return f.token, f.err
	}
	f := &flight{done: make(chan struct{})}
	g.calls[key] = f
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(f.done)
	}()
	f.token, f.err = fn()
	return f.token, f.err
}
