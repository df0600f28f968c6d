package dbsc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/ratelimit"
)

// Defaults and bounds of [Config].
const (
	// DefaultCookieName is the bound cookie's name. __Host- makes the
	// browser keep it only Secure, host-only and on Path=/. Not
	// __Host-Http- (which would also keep page script from writing it):
	// Chromium 156 refuses a bound cookie of that name and registers
	// nothing. The cookie is HttpOnly all the same.
	DefaultCookieName         = "__Host-bound"
	DefaultCookieLifetime     = 5 * time.Minute
	MinCookieLifetime         = 10 * time.Second
	DefaultRegistrationWindow = 2 * time.Minute
	DefaultRegisterPath       = "/auth/dbsc/register"
	DefaultRefreshPath        = "/auth/dbsc/refresh"
)

// refreshChallengeGrace is how long a refresh challenge outlives the bound
// cookie: a browser may keep the challenge of one refresh (sent with its
// answer) for the next, a cookie's lifetime later.
const refreshChallengeGrace = time.Minute

// Every refresh challenge is an auxiliary record written to the session
// store, and anyone holding a bound session's cookies can ask for one
// (a refresh without a proof answers 403 with a fresh challenge). Token
// buckets bound those writes, on each node: per session, so one copied
// cookie jar cannot make the store write without end, and for all
// sessions together. A session's bucket pays for each challenge issued:
// the 403's, and the next one a successful refresh carries. Past it, a
// refresh is answered 503 with Retry-After and writes nothing: a 4xx
// would make Chromium drop the session, a 5xx makes it back off.
const (
	// refreshPerSec and refreshBurst, per session: the fastest cadence
	// (a refresh per bound-cookie lifetime of MinCookieLifetime, each
	// asking for a challenge first, so two records) never runs dry, and
	// several tabs refreshing at once fit in the burst.
	refreshPerSec = 2 / float64(MinCookieLifetime/time.Second)
	refreshBurst  = 24
	// refreshAllPerSec and refreshAllBurst: every session's together.
	refreshAllPerSec = 200
	refreshAllBurst  = 2000
	// refreshTable is how many sessions' buckets are remembered: a fixed
	// size, so many sessions cannot grow memory. A session forgotten
	// comes back with a full bucket, which the overall bound caps.
	refreshTable = 4096
)

// refreshLimit bounds the refresh challenges written.
type refreshLimit struct {
	perSession *ratelimit.Keyed
	overall    *ratelimit.Single
	retryAfter string // seconds: one token's refill for a session
}

func newRefreshLimit(perSession, overall ratelimit.Rate) refreshLimit {
	return refreshLimit{
		perSession: ratelimit.NewKeyed(refreshTable, perSession),
		overall:    ratelimit.NewSingle(overall),
		retryAfter: strconv.Itoa(int(math.Ceil(1 / perSession.PerSec))),
	}
}

// allow takes a token for the session with handle: its own first, so a
// flood spends its own budget, never everyone's.
func (l refreshLimit) allow(handle string, now time.Time) bool {
	return l.perSession.Allow(handle, now) && l.overall.Allow(now)
}

// ErrInvalidConfig wraps every problem [New] finds in a [Config].
var ErrInvalidConfig = errors.New("dbsc: invalid configuration")

// Config configures a [Binder]. Store and Key are required; every other
// field has a default stated in its comment.
type Config struct {
	// Store keeps the single-use challenges, as auxiliary records beside
	// the sessions: the session store, so every node sees a challenge
	// spent at once. Required.
	Store cloakroom.AuxStore
	// Key is the secret the bound cookies are MACed with, at least
	// MinKeySize (32) random bytes, the same on every node. It is never
	// derived from the session cookie: an infostealer that copied the
	// session cookie cannot mint a bound cookie. Required.
	Key []byte
	// CookieName is the bound cookie's name. Default "__Host-bound".
	// Chromium 156 refuses __Host-Http- names for bound cookies.
	CookieName string
	// CookieLifetime is how long a bound cookie works: how long a copied
	// cookie jar keeps working after the copy. Default 5 minutes; at least
	// 10 seconds (the browser refreshes before each expiry, a signature
	// with the device's key each time).
	CookieLifetime time.Duration
	// SameSite is the bound cookie's SameSite mode, the session cookie's:
	// Lax (the default) or Strict. None is refused.
	SameSite http.SameSite
	// RegistrationWindow is how long after sign-in a session may register
	// its device key, and how long the registration challenge lives. A
	// session that has not registered by then never will: a session
	// cookie stolen later cannot bind the thief's key. Default 2 minutes.
	RegistrationWindow time.Duration
	// RegisterPath and RefreshPath are the endpoints' paths, which
	// [Binder.Handler] serves. Default "/auth/dbsc/register" and
	// "/auth/dbsc/refresh".
	RegisterPath string
	RefreshPath  string
	// Algorithms are the signature algorithms offered, in order of
	// preference; ES256 and RS256 are the only ones accepted. Default
	// both, ES256 first.
	Algorithms []string
	// Require, when set, says whether a request needs a bound session (an
	// admin page, an admin's role): a session that never registered is
	// then refused with ErrBindingRequired. This locks out browsers
	// without device-bound sessions from those requests. Default nil:
	// sessions that never registered keep working everywhere.
	Require func(r *http.Request, s *cloakroom.Session) bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the audit lines (registrations, refreshes, refused
	// requests). Default slog.Default().
	Logger *slog.Logger
}

// Binder binds sessions to keys their browsers hold (Device Bound Session
// Credentials): it offers registration at sign-in, serves the registration
// and refresh endpoints, and checks every request of a bound session for
// its short-lived bound cookie. Create one with [New]; it is safe for
// concurrent use.
type Binder struct {
	cfg        Config
	challenges challenges
	limit      refreshLimit
	mac        *macKey // Config.Key's
	log        *slog.Logger
	attributes string // the bound cookie's attributes, as Set-Cookie and the instructions spell them

	offers, registrations, refreshes, refused *prometheus.CounterVec
}

// New checks cfg, fills in defaults and returns a Binder. Every problem is
// reported at once, each wrapped in ErrInvalidConfig.
func New(cfg Config) (*Binder, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if cfg.Store == nil {
		bad("Store is required")
	}
	if len(cfg.Key) < MinKeySize {
		bad("Key must be at least %d bytes (got %d)", MinKeySize, len(cfg.Key))
	}
	if cfg.CookieName == "" {
		cfg.CookieName = DefaultCookieName
	}
	if !cloakroom.ValidCookieName(cfg.CookieName) {
		bad("CookieName %q is not a valid cookie name", cfg.CookieName)
	}
	if cfg.CookieLifetime == 0 {
		cfg.CookieLifetime = DefaultCookieLifetime
	}
	if cfg.CookieLifetime < MinCookieLifetime {
		bad("CookieLifetime %v is shorter than %v", cfg.CookieLifetime, MinCookieLifetime)
	}
	if cfg.CookieLifetime%time.Second != 0 {
		bad("CookieLifetime %v is not whole seconds", cfg.CookieLifetime)
	}
	switch cfg.SameSite {
	case 0, http.SameSiteDefaultMode, http.SameSiteLaxMode:
		cfg.SameSite = http.SameSiteLaxMode
	case http.SameSiteStrictMode:
	default:
		bad("SameSite must be Lax or Strict")
	}
	if cfg.RegistrationWindow == 0 {
		cfg.RegistrationWindow = DefaultRegistrationWindow
	}
	if cfg.RegistrationWindow < 0 {
		bad("RegistrationWindow must not be negative")
	}
	if cfg.RegisterPath == "" {
		cfg.RegisterPath = DefaultRegisterPath
	}
	if cfg.RefreshPath == "" {
		cfg.RefreshPath = DefaultRefreshPath
	}
	for name, p := range map[string]string{"RegisterPath": cfg.RegisterPath, "RefreshPath": cfg.RefreshPath} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\"\\?#;, \t\r\n") {
			bad("%s %q must be an absolute path without quotes, spaces, query or fragment", name, p)
		}
	}
	if cfg.RegisterPath == cfg.RefreshPath {
		bad("RegisterPath and RefreshPath must differ")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{AlgES256, AlgRS256}
	}
	for _, a := range cfg.Algorithms {
		if a != AlgES256 && a != AlgRS256 {
			bad("algorithm %q is not accepted (ES256 or RS256)", a)
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Key = slices.Clone(cfg.Key)
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	sameSite := "Lax"
	if cfg.SameSite == http.SameSiteStrictMode {
		sameSite = "Strict"
	}
	b := &Binder{
		cfg:        cfg,
		challenges: challenges{store: cfg.Store, now: cfg.Now},
		mac:        newMACKey(cfg.Key),
		limit: newRefreshLimit(ratelimit.Rate{PerSec: refreshPerSec, Burst: refreshBurst},
			ratelimit.Rate{PerSec: refreshAllPerSec, Burst: refreshAllBurst}),
		log:        cfg.Logger,
		attributes: "Path=/; Secure; HttpOnly; SameSite=" + sameSite,
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_dbsc_offers_total",
			Help: "Device-bound session registrations offered at sign-in, by outcome (offered, error).",
		}, []string{"outcome"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_dbsc_registrations_total",
			Help: "Device-bound session registrations, by outcome: registered, or the class of error (" + strings.Join(registrationErrors, ", ") + ").",
		}, []string{"outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_dbsc_refreshes_total",
			Help: "Bound cookie refreshes, by outcome: refreshed, challenged (a fresh challenge asked for), ended (the session is over: continue false), throttled (over the session's or the node's bound on challenges), or the class of failure (" + strings.Join(refreshFailures, ", ") + ").",
		}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_dbsc_refused_total",
			Help: "Requests of bound sessions refused for their bound cookie, by reason (missing, expired, invalid, required). A spike is a copied cookie jar being replayed.",
		}, []string{"reason"}),
	}
	for _, o := range []string{"offered", "error"} {
		b.offers.WithLabelValues(o)
	}
	for _, o := range append([]string{"registered"}, registrationErrors...) {
		b.registrations.WithLabelValues(o)
	}
	for _, o := range append([]string{"refreshed", "challenged", "ended", "throttled"}, refreshFailures...) {
		b.refreshes.WithLabelValues(o)
	}
	for _, o := range []string{"missing", "expired", "invalid", "required"} {
		b.refused.WithLabelValues(o)
	}
	return b, nil
}

// Outcome classes of the metrics, from the error that ended a request.
var (
	registrationErrors = []string{"unauthenticated", "already_bound", "window_closed", "malformed", "algorithm", "key", "signature", "challenge", "challenge_used", "unavailable"}
	refreshFailures    = []string{"malformed", "algorithm", "key", "signature", "challenge_used", "unavailable"}
)

// class names err for the metrics and the audit lines.
func class(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{ErrMalformed, "malformed"}, {ErrAlgorithm, "algorithm"}, {ErrKey, "key"}, {ErrSignature, "signature"},
		{ErrChallengeUsed, "challenge_used"}, {ErrChallenge, "challenge"}, {ErrUnavailable, "unavailable"},
		{errUnauthenticated, "unauthenticated"}, {ErrAlreadyBound, "already_bound"}, {ErrWindowClosed, "window_closed"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "unavailable"
}

// Errors of registration.
var (
	// ErrAlreadyBound: the session registered a key already; a session
	// is bound once, to one key.
	ErrAlreadyBound = errors.New("dbsc: the session is already bound to a device key")
	// ErrWindowClosed: the registration window after sign-in has passed.
	ErrWindowClosed = errors.New("dbsc: the registration window has closed")

	errUnauthenticated = errors.New("dbsc: no live session")
)

// Collectors returns the binder's metrics, for a Prometheus registry.
func (b *Binder) Collectors() []prometheus.Collector {
	return []prometheus.Collector{b.offers, b.registrations, b.refreshes, b.refused}
}

// Config returns the binder's configuration with its defaults filled in.
func (b *Binder) Config() Config { return b.cfg }

// Offer offers the session of a sign-in that just happened a device
// binding: it stores a fresh single-use registration challenge for the
// session, alive for the registration window, and adds the
// Secure-Session-Registration header and a first bound cookie to h, the
// sign-in response's headers. Only that response carries the challenge,
// so a session cookie copied later cannot register a key of its own. A
// browser without device bound sessions ignores the header; its session
// never binds, so the cookie goes unchecked. Call it once per session, after
// [cloakroom.Session.Login] (package signin does, for every way in).
func (b *Binder) Offer(ctx context.Context, h http.Header, s *cloakroom.Session) error {
	if !s.LoggedIn() {
		return errUnauthenticated
	}
	if _, bound := s.Get(cloakroom.BindingValue); bound {
		return ErrAlreadyBound
	}
	challenge, err := b.challenges.issueRegistration(ctx, s.Handle(), b.cfg.RegistrationWindow)
	if err != nil {
		b.offers.WithLabelValues("error").Inc()
		return err
	}
	b.offers.WithLabelValues("offered").Inc()
	h.Add("Secure-Session-Registration", Registration{
		Algorithms: b.cfg.Algorithms, Path: b.cfg.RegisterPath, Challenge: challenge,
	}.Header())
	// A first bound cookie rides on the sign-in answer as well: Chromium
	// registers while it follows that answer (its redirect, the page's
	// next calls), and those requests can reach the gateway after the
	// registration bound the session but before its cookie came back.
	h.Add("Set-Cookie", b.cookie(s))
	return nil
}

// Check is the session manager's binding hook (cloakroom.Config.Binding):
// a request of a bound session must carry a bound cookie minted for that
// session and not yet expired; a session that never registered passes,
// unless Config.Require asks for binding. POSTs to the refresh and
// registration endpoints pass, as they must work without the bound cookie. It reads
// nothing from the store: the binding travels with the session's values.
// A refusal is counted and logged as a suspected replay; the session is
// not ended.
func (b *Binder) Check(r *http.Request, s *cloakroom.Session) error {
	if r.Method == http.MethodPost && (r.URL.Path == b.cfg.RefreshPath || r.URL.Path == b.cfg.RegisterPath) {
		// The endpoints check their own proofs; they answer nothing
		// else. (Behind forward auth, the proxy sends these paths to
		// the gateway, never to an app.)
		return nil
	}
	if _, bound := s.Get(cloakroom.BindingValue); !bound {
		if b.cfg.Require != nil && b.cfg.Require(r, s) {
			b.refuse(r, s, "required", ErrBindingRequired)
			return ErrBindingRequired
		}
		return nil
	}
	// Read as the session cookie is: one, or none. A second one may have
	// been planted (a sibling domain, a longer path) to shadow it.
	value, err := cloakroom.CookieValue(r.Header, b.cfg.CookieName)
	switch {
	case errors.Is(err, cloakroom.ErrNoCookie):
		b.refuse(r, s, "missing", ErrCookieMissing)
		return ErrCookieMissing
	case err != nil:
		err = fmt.Errorf("%w: %w", ErrCookieInvalid, err)
		b.refuse(r, s, "invalid", err)
		return err
	}
	if err := verifyCookie(b.mac, value, s.Handle(), b.cfg.Now()); err != nil {
		reason := "invalid"
		if errors.Is(err, ErrCookieExpired) {
			reason = "expired"
		}
		b.refuse(r, s, reason, err)
		return err
	}
	return nil
}

// refuse counts and logs a request refused by Check.
func (b *Binder) refuse(r *http.Request, s *cloakroom.Session, reason string, err error) {
	b.refused.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{
		slog.String("reason", reason), slog.String("user", s.UserID()), slog.String("session", s.Ref()),
		slog.String("client_ip", s.ClientIP()), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("err", err.Error()),
	}
	if skipped := r.Header.Get("Secure-Session-Skipped"); skipped != "" && len(skipped) <= 256 {
		attrs = append(attrs, slog.String("skipped", skipped)) // the browser says why it did not refresh
	}
	msg := "device-bound session refused: suspected replay of a copied cookie"
	if reason == "required" {
		msg = "device binding required: session not bound"
	}
	b.log.LogAttrs(r.Context(), slog.LevelWarn, msg, attrs...)
}

// Handler serves the registration (POST Config.RegisterPath) and refresh
// (POST Config.RefreshPath) endpoints for sessions of m, whose middleware
// must wrap it, and whose Config.Binding must be [Binder.Check]. Any other
// request is answered 404.
func (b *Binder) Handler(m *cloakroom.Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// No framing and no caching; no CORS header at all, so no other
		// origin reads an answer with credentials.
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("Cache-Control", "no-store")
		var path string
		switch r.URL.Path {
		case b.cfg.RegisterPath, b.cfg.RefreshPath:
			path = r.URL.Path
		default:
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodPost {
			h.Set("Allow", http.MethodPost)
			httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST.")
			return
		}
		s := m.Session(r)
		if path == b.cfg.RegisterPath {
			b.register(w, r, s)
		} else {
			b.refresh(w, r, s)
		}
	})
}

// register serves the registration endpoint.
func (b *Binder) register(w http.ResponseWriter, r *http.Request, s *cloakroom.Session) {
	ctx := r.Context()
	// Like a refresh, a registration is the browser's doing, and Check
	// lets it through without the bound cookie: it must not keep an idle
	// session alive (a copied cookie jar could, by posting here).
	s.MarkPassive()
	jwk, alg, err := b.verifyRegistration(ctx, r, s)
	// Read now: a save that finds the session ended leaves it without them.
	user, ref := s.UserID(), s.Ref()
	audit := func(level slog.Level, msg, outcome string, extra slog.Attr) {
		b.registrations.WithLabelValues(outcome).Inc()
		b.log.LogAttrs(ctx, level, msg, slog.String("outcome", outcome), slog.String("user", user), slog.String("session", ref),
			slog.String("client_ip", s.ClientIP()), extra)
	}
	if err != nil {
		audit(slog.LevelWarn, "device binding registration refused", class(err), slog.String("err", err.Error()))
		switch {
		case errors.Is(err, ErrUnavailable):
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Try again shortly.")
		case errors.Is(err, errUnauthenticated):
			httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "Sign in first.")
		case errors.Is(err, ErrAlreadyBound):
			httpjson.Error(w, http.StatusConflict, "already_bound", "This session is already bound to a device.")
		default:
			httpjson.Error(w, http.StatusBadRequest, "registration_refused", "The device binding was refused.")
		}
		return
	}
	// The key joins the session's values, written with the session's
	// compare-and-set before the answer starts: it survives renewals,
	// ends with the session, and costs no read of its own per request.
	s.Put(cloakroom.BindingValue, string(jwk))
	b.answer(w, s)
	// The answer's first byte saved the session: only now is it known
	// whether the key was kept. The store may have failed (the middleware
	// answered 503 instead), or a logout ended the session meanwhile (its
	// changes dropped).
	switch err := s.Err(); {
	case err != nil:
		audit(slog.LevelWarn, "device binding registration refused", "unavailable", slog.String("err", err.Error()))
	case !s.LoggedIn():
		audit(slog.LevelWarn, "device binding registration refused", "unauthenticated", slog.String("err", "the session ended before its key was saved"))
	default:
		audit(slog.LevelInfo, "device binding registered", "registered", slog.String("alg", alg))
	}
}

// verifyRegistration checks a registration request and returns the key to
// bind and its algorithm.
func (b *Binder) verifyRegistration(ctx context.Context, r *http.Request, s *cloakroom.Session) ([]byte, string, error) {
	if err := s.Err(); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !s.LoggedIn() {
		return nil, "", errUnauthenticated
	}
	if _, bound := s.Get(cloakroom.BindingValue); bound {
		return nil, "", ErrAlreadyBound
	}
	created, _, _ := s.Times()
	if !b.cfg.Now().Before(created.Add(b.cfg.RegistrationWindow)) {
		return nil, "", ErrWindowClosed
	}
	token, err := ParseResponse(r.Header.Get("Secure-Session-Response"))
	if err != nil {
		return nil, "", err
	}
	proof, err := VerifyRegistration(token)
	if err != nil {
		return nil, "", err
	}
	if !slices.Contains(b.cfg.Algorithms, proof.Algorithm) {
		return nil, "", fmt.Errorf("%w: %s was not offered", ErrAlgorithm, proof.Algorithm)
	}
	if err := b.challenges.spendRegistration(ctx, s.Handle(), proof.Challenge); err != nil {
		return nil, "", err
	}
	return proof.JWK, proof.Algorithm, nil
}

// refresh serves the refresh endpoint: 403 with a fresh challenge, then,
// with a proof over it signed by the session's key, a new bound cookie.
// It never rotates the session token and never moves its deadlines.
func (b *Binder) refresh(w http.ResponseWriter, r *http.Request, s *cloakroom.Session) {
	ctx := r.Context()
	// A refresh is the browser's doing, not the user's: it must not keep
	// an idle session alive.
	s.MarkPassive()
	id, err := ParseSessionID(r.Header.Get("Sec-Secure-Session-Id"))
	if err != nil {
		b.refreshes.WithLabelValues("malformed").Inc()
		httpjson.Error(w, http.StatusBadRequest, "malformed", "Sec-Secure-Session-Id is missing or malformed.")
		return
	}
	if err := s.Err(); err != nil {
		// 5xx: the browser keeps the session and backs off.
		b.refreshes.WithLabelValues("unavailable").Inc()
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Try again shortly.")
		return
	}
	jwk, bound := s.Get(cloakroom.BindingValue)
	if !s.LoggedIn() || !bound || s.Handle() != id {
		// Ended (logout, revocation, expiry), never bound, or a session
		// the browser no longer has the cookie of: stop refreshing it.
		b.refreshes.WithLabelValues("ended").Inc()
		// Debug: anyone can post these, as often as they like; the
		// metric counts them.
		b.log.LogAttrs(ctx, slog.LevelDebug, "device-bound session refresh: session over", slog.String("session", s.Ref()), slog.String("client_ip", s.ClientIP()))
		// The identifier makes Chromium end the session as asked rather
		// than as an error.
		stop := Stop()
		stop.SessionIdentifier = id
		httpjson.Write(w, http.StatusOK, stop)
		return
	}
	header := r.Header.Get("Secure-Session-Response")
	if header == "" {
		b.challenge(w, r, s, "challenged")
		return
	}
	token, err := ParseResponse(header)
	var proof *Proof
	if err == nil {
		proof, err = VerifyRefresh(token, []byte(jwk))
	}
	if err == nil {
		err = b.challenges.spendRefresh(ctx, s.Handle(), proof.Challenge)
	}
	switch {
	case errors.Is(err, ErrChallenge), errors.Is(err, ErrChallengeUsed):
		// Expired, never issued, or spent (a replay, or a browser
		// retrying a refresh whose answer it lost): a fresh challenge,
		// which only the device's key can sign. A 4xx would make the
		// browser drop the session for good.
		outcome := "challenged"
		if errors.Is(err, ErrChallengeUsed) {
			outcome = "challenge_used"
		}
		b.challenge(w, r, s, outcome)
		return
	case err != nil:
		outcome := class(err)
		b.refreshes.WithLabelValues(outcome).Inc()
		b.log.LogAttrs(ctx, slog.LevelWarn, "device-bound session refresh refused", slog.String("outcome", outcome),
			slog.String("user", s.UserID()), slog.String("session", s.Ref()), slog.String("client_ip", s.ClientIP()), slog.String("err", err.Error()))
		if errors.Is(err, ErrUnavailable) {
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Try again shortly.")
			return
		}
		httpjson.Error(w, http.StatusBadRequest, "refresh_refused", "The device proof was refused.")
		return
	}
	b.refreshes.WithLabelValues("refreshed").Inc()
	b.log.LogAttrs(ctx, slog.LevelDebug, "bound cookie refreshed", slog.String("user", s.UserID()), slog.String("session", s.Ref()))
	// The next refresh's challenge comes with this answer, so it needs one
	// round trip instead of two; a failure to store it, or a session over
	// its bound, only costs that.
	if b.limit.allow(s.Handle(), b.cfg.Now()) {
		if next, err := b.challenges.issueRefresh(ctx, s.Handle(), b.cfg.CookieLifetime+refreshChallengeGrace); err == nil {
			w.Header().Set("Secure-Session-Challenge", ChallengeHeader(next, s.Handle()))
		}
	}
	b.answer(w, s)
}

// challenge answers 403 with a fresh refresh challenge for s, or 503 with
// Retry-After when s is over its bound on challenges.
func (b *Binder) challenge(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, outcome string) {
	if !b.limit.allow(s.Handle(), b.cfg.Now()) {
		b.refreshes.WithLabelValues("throttled").Inc()
		// Debug: a flood would otherwise fill the log; the metric counts it.
		b.log.LogAttrs(r.Context(), slog.LevelDebug, "device-bound session refresh throttled",
			slog.String("user", s.UserID()), slog.String("session", s.Ref()), slog.String("client_ip", s.ClientIP()))
		w.Header().Set("Retry-After", b.limit.retryAfter)
		httpjson.Error(w, http.StatusServiceUnavailable, "throttled", "Too many refreshes of this session. Wait a moment, then try again.")
		return
	}
	c, err := b.challenges.issueRefresh(r.Context(), s.Handle(), b.cfg.CookieLifetime+refreshChallengeGrace)
	if err != nil {
		b.refreshes.WithLabelValues("unavailable").Inc()
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Try again shortly.")
		return
	}
	b.refreshes.WithLabelValues(outcome).Inc()
	w.Header().Set("Secure-Session-Challenge", ChallengeHeader(c, s.Handle()))
	httpjson.Error(w, http.StatusForbidden, "challenge", "Sign the challenge with the session's device key.")
}

// answer sets a new bound cookie for s and writes the session
// instructions. The cookie's life ends with the session's absolute
// deadline at the latest: a refresh never extends a session.
func (b *Binder) answer(w http.ResponseWriter, s *cloakroom.Session) {
	w.Header().Add("Set-Cookie", b.cookie(s))
	httpjson.Write(w, http.StatusOK, b.Instructions(s.Handle()))
}

// cookie returns the Set-Cookie value of a new bound cookie for s, which
// ends after the cookie lifetime or at the session's absolute deadline.
func (b *Binder) cookie(s *cloakroom.Session) string {
	now := b.cfg.Now()
	expiry := now.Add(b.cfg.CookieLifetime)
	if _, _, absolute := s.Times(); absolute.Before(expiry) {
		expiry = absolute
	}
	expiry = expiry.Truncate(time.Second)
	maxAge := int(expiry.Sub(now) / time.Second)
	return b.cfg.CookieName + "=" + mintCookie(b.mac, s.Handle(), expiry) + "; " + b.attributes + "; Max-Age=" + strconv.Itoa(max(maxAge, 1))
}

// Instructions returns the session instructions for the bound session with
// the given identifier (its handle): the refresh URL, the whole origin as
// scope, and the bound cookie.
func (b *Binder) Instructions(sessionID string) Instructions {
	return Instructions{
		SessionIdentifier: sessionID,
		RefreshURL:        b.cfg.RefreshPath,
		Scope:             Scope{IncludeSite: false},
		Credentials:       []Credential{{Type: "cookie", Name: b.cfg.CookieName, Attributes: b.attributes}},
	}
}
