package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom"
)

// Defaults for [Config].
const (
	DefaultMaxSessionsPerUser = 10
	DefaultClockSkew          = time.Minute
)

// Errors of [Admission.Admit], besides ErrInvalidIdentity. They are wrapped.
var (
	// ErrChangedMeanwhile: the account changed (disabled, password or
	// roles) or every session was revoked after the pin was taken, so what
	// was checked is stale; nothing was created. The user signs in again.
	ErrChangedMeanwhile = errors.New("signin: the account or the sessions changed during the sign-in")
	// ErrUnavailable: the session store failed; nothing was created. Try
	// again shortly.
	ErrUnavailable = errors.New("signin: sessions cannot be created right now")
	// ErrSecondFactorRequired: the identity has a role of
	// [Config.RequireSecondFactor] and did not sign in with a second
	// factor; nothing was created.
	ErrSecondFactorRequired = errors.New("signin: this role requires signing in with a second factor")
)

// ErrInvalidConfig wraps every problem [New] finds in a [Config].
var ErrInvalidConfig = errors.New("signin: invalid configuration")

// Config configures an [Admission]. Sessions is required; every other field
// has a default stated in its comment.
type Config struct {
	// Sessions creates the sessions. Required.
	Sessions *cloakroom.Manager
	// MaxSessionsPerUser bounds a user's live sessions (ASVS 7.1.2): a
	// sign-in beyond it ends the user's oldest other sessions; the new one
	// always stays. Default 10; negative means no limit.
	MaxSessionsPerUser int
	// ClockSkew is how far in the future an authentication time may lie
	// (a provider's clock ahead of ours) before the identity is refused,
	// and how far ahead a recorded one still counts as recent. Default one
	// minute.
	ClockSkew time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the audit line of every admission. Default
	// slog.Default().
	Logger *slog.Logger
	// RequireSecondFactor lists roles whose users must have signed in
	// with a second factor: an Identity with one of these roles (compared
	// exactly) and no amr of otp, hwk, swk or mfa is refused with
	// ErrSecondFactorRequired, whatever the way in. Default none.
	RequireSecondFactor []string
	// Bind, when set, is called after every admission with the new
	// session and the sign-in response's headers: device binding
	// (dbsc.Binder.Offer) offers the session registration there, so every
	// way in (password, passkey, OpenID, vault capture) offers it, and
	// only the sign-in's own response carries the challenge. It is not
	// called when Admit gets no header to write to. A failure is logged
	// and the sign-in stands: the session then works as one whose browser
	// cannot bind. Default nil: no binding offered.
	Bind func(ctx context.Context, h http.Header, s *cloakroom.Session) error
}

// Admission turns identities into sessions; see [Admission.Admit]. Create
// one with [New]; it is safe for concurrent use.
type Admission struct {
	cfg      Config
	sessions *cloakroom.Manager
	log      *slog.Logger
	admitted *prometheus.CounterVec
}

// Outcome label values of cloakroom_signins_total.
const (
	outcomeAdmitted = "admitted"
	outcomeChanged  = "changed_meanwhile"
	outcomeInvalid  = "invalid_identity"
	outcomeError    = "error"
	outcomeFactor   = "second_factor_required"
)

// maxRoleLen bounds a role name of [Config.RequireSecondFactor].
const maxRoleLen = 128

// secondFactorAMR are the RFC 8176 values that count as a second factor:
// a one-time code, a hardware- or software-bound key, or the provider's
// own "several factors". Not sms or tel: codes over the phone network can
// be redirected, and a provider that counts them as enough says mfa.
var secondFactorAMR = []string{AMROTP, AMRHardware, AMRSoftware, AMRMFA}

// NeedsSecondFactor reports whether id would be refused for lack of a
// second factor: it has a role of [Config.RequireSecondFactor] and its
// amr holds none of otp, hwk, swk, mfa. A way in asks it first to offer
// its own second step (the gateway's local accounts enrol TOTP).
func (a *Admission) NeedsSecondFactor(id Identity) bool {
	if !slices.ContainsFunc(id.Roles, func(r string) bool { return slices.Contains(a.cfg.RequireSecondFactor, r) }) {
		return false
	}
	return !slices.ContainsFunc(id.AMR, func(v string) bool { return slices.Contains(secondFactorAMR, v) })
}

// New checks cfg and returns an Admission.
func New(cfg Config) (*Admission, error) {
	var problems []error
	if cfg.Sessions == nil {
		problems = append(problems, fmt.Errorf("%w: Sessions is required", ErrInvalidConfig))
	}
	for _, role := range cfg.RequireSecondFactor {
		if role == "" || len(role) > maxRoleLen || strings.IndexFunc(role, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			problems = append(problems, fmt.Errorf("%w: RequireSecondFactor: role %q must be 1 to %d characters without spaces", ErrInvalidConfig, role, maxRoleLen))
		}
	}
	if cfg.ClockSkew < 0 {
		problems = append(problems, fmt.Errorf("%w: ClockSkew must not be negative", ErrInvalidConfig))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if cfg.MaxSessionsPerUser == 0 {
		cfg.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Admission{
		cfg: cfg, sessions: cfg.Sessions, log: cfg.Logger,
		admitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_signins_total",
			Help: "Sessions admitted or refused at sign-in, by way in (password, oidc, vault) and outcome (admitted, changed_meanwhile, invalid_identity, second_factor_required, error).",
		}, []string{"method", "outcome"}),
	}
	for _, m := range []Method{Password, OIDC, Vault} {
		for _, o := range []string{outcomeAdmitted, outcomeChanged, outcomeInvalid, outcomeError, outcomeFactor} {
			a.admitted.WithLabelValues(string(m), o)
		}
	}
	return a, nil
}

// Collectors returns the admission's metrics, for the gateway's registry.
func (a *Admission) Collectors() []prometheus.Collector {
	return []prometheus.Collector{a.admitted}
}

// Sessions returns the manager sessions are admitted to.
func (a *Admission) Sessions() *cloakroom.Manager { return a.sessions }

// Now reads the admission's clock, the one authentication times are
// judged by: a way in stamps an Identity's AuthTime with it.
func (a *Admission) Now() time.Time { return a.cfg.Now() }

// Admit signs id in on the request's session: it checks id, starts a new
// session for it (a new token; the browser's previous session ends in the
// same store step), records how and when the user authenticated, ends the
// user's oldest sessions beyond the cap, and adds the known-device cookie
// to h (when id carries device tokens; h may be nil otherwise, but then no
// device binding is offered: see Config.Bind). r must have
// passed through the session middleware of the Admission's manager.
//
// It fails with an error wrapping ErrInvalidIdentity (nothing created),
// ErrChangedMeanwhile (the pin moved: nothing created) or ErrUnavailable.
func (a *Admission) Admit(ctx context.Context, r *http.Request, h http.Header, id Identity) error {
	s := a.sessions.Session(r)
	err := a.admit(ctx, s, h, id)
	a.audit(ctx, r, s, id, err)
	return err
}

func (a *Admission) admit(ctx context.Context, s *cloakroom.Session, h http.Header, id Identity) error {
	if err := id.validate(a.cfg.Now(), a.cfg.ClockSkew); err != nil {
		return err
	}
	if a.NeedsSecondFactor(id) {
		return fmt.Errorf("%w (amr %q)", ErrSecondFactorRequired, strings.Join(id.AMR, " "))
	}
	if len(id.DeviceTokens) > 0 && h == nil {
		return fmt.Errorf("%w: device tokens without a response to set them in", ErrInvalidIdentity)
	}
	err := s.Login(ctx, id.UserID, cloakroom.LoginOptions{Persistent: id.Persistent, Pin: id.Pin, Values: id.values()})
	switch {
	case errors.Is(err, cloakroom.ErrNotLoggedIn):
		return fmt.Errorf("%w: %w", ErrChangedMeanwhile, err)
	case errors.Is(err, cloakroom.ErrInvalidInput):
		return fmt.Errorf("%w: %w", ErrInvalidIdentity, err)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(id.DeviceTokens) > 0 {
		h.Add("Set-Cookie", deviceCookie(id.DeviceTokens))
	}
	a.limitSessions(ctx, s)
	if a.cfg.Bind != nil && h != nil {
		if err := a.cfg.Bind(ctx, h, s); err != nil {
			a.log.WarnContext(ctx, "sign-in: device binding not offered", "user", id.UserID, "session", s.Ref(), "err", err)
		}
	}
	return nil
}

// limitSessions ends the user's oldest sessions beyond the cap, after a
// sign-in: the new session always stays. A failure is logged; the sign-in
// stands (the cap is a bound on resources and exposure, not a check the
// sign-in depends on).
func (a *Admission) limitSessions(ctx context.Context, s *cloakroom.Session) {
	limit := a.cfg.MaxSessionsPerUser
	if limit < 0 {
		return
	}
	devices, err := s.Devices(ctx)
	if err != nil {
		a.log.WarnContext(ctx, "session limit: listing sessions failed", "user", s.UserID(), "err", err)
		return
	}
	if len(devices) <= limit {
		return
	}
	others := slices.DeleteFunc(devices, func(d cloakroom.Device) bool { return d.Current })
	slices.SortFunc(others, func(a, b cloakroom.Device) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, d := range others[:len(others)+1-limit] {
		err := a.sessions.RevokeDevice(ctx, s.UserID(), d.Handle)
		if errors.Is(err, cloakroom.ErrNotFound) {
			err = nil // ended meanwhile
		}
		outcome := "success"
		if err != nil {
			outcome = "error"
		}
		a.log.LogAttrs(ctx, slog.LevelInfo, "revocation", slog.String("kind", "session_limit"),
			slog.String("user", s.UserID()), slog.String("handle", d.Handle), slog.String("outcome", outcome))
	}
}

// audit writes the admission's one audit line and counts it.
func (a *Admission) audit(ctx context.Context, r *http.Request, s *cloakroom.Session, id Identity, err error) {
	outcome := outcomeAdmitted
	switch {
	case err == nil:
	case errors.Is(err, ErrChangedMeanwhile):
		outcome = outcomeChanged
	case errors.Is(err, ErrInvalidIdentity):
		outcome = outcomeInvalid
	case errors.Is(err, ErrSecondFactorRequired):
		outcome = outcomeFactor
	default:
		outcome = outcomeError
	}
	method := string(id.Method)
	if id.Method.kind() == "" {
		method = "unknown"
	}
	a.admitted.WithLabelValues(method, outcome).Inc()
	attrs := []slog.Attr{
		slog.String("outcome", outcome), slog.String("method", method), slog.String("user", id.UserID),
		slog.String("client_ip", a.sessions.Config().ClientIP(r)),
	}
	if err == nil {
		attrs = append(attrs, slog.String("session", s.Ref()), slog.String("amr", strings.Join(id.AMR, " ")))
		if id.AuthTime.IsZero() {
			attrs = append(attrs, slog.String("auth_time", "unknown"))
		} else {
			attrs = append(attrs, slog.Time("auth_time", id.AuthTime.UTC()))
		}
	} else {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "sign-in", attrs...)
}

// Recent reports whether the session's user proved who they are within
// maxAge (a step-up check, ASVS 7.5.1 and 7.5.3). An unknown
// authentication time is never recent.
func (a *Admission) Recent(s *cloakroom.Session, maxAge time.Duration) bool {
	t, ok := AuthTime(s)
	if !ok {
		return false
	}
	age := a.cfg.Now().Sub(t)
	return age >= -a.cfg.ClockSkew && age <= maxAge
}

// MarkAuthenticated records that the session's user proved who they are
// now (a password re-entered for a step-up); see [MarkAuthenticated].
func (a *Admission) MarkAuthenticated(s *cloakroom.Session) {
	MarkAuthenticated(s, a.cfg.Now())
}
