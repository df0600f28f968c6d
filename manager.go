package cloakroom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults for [Config]. They follow ASVS 5.0 V7 and NIST SP 800-63B AAL2:
// 30 minutes idle, 12 hours absolute.
const (
	DefaultCookieName      = "__Host-Http-session"
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultTouchInterval   = time.Minute
	DefaultRecheckInterval = 2 * time.Second
)

// maxUserIDLength bounds user identifiers passed to Login.
const maxUserIDLength = 256

// maxUserAgentLength bounds the User-Agent kept with a session.
const maxUserAgentLength = 512

// Errors returned by the [Manager] and [Session]. They are wrapped with %w.
var (
	// ErrInvalidConfig wraps every problem [New] finds in a Config.
	ErrInvalidConfig = errors.New("cloakroom: invalid configuration")
	// ErrNoMiddleware means a Session was asked for on a request that did
	// not pass through [Manager.Handler].
	ErrNoMiddleware = errors.New("cloakroom: request did not pass through the session middleware")
	// ErrNotLoggedIn is returned by operations that need a logged-in session.
	ErrNotLoggedIn = errors.New("cloakroom: not logged in")
	// ErrStoreUnavailable wraps store failures seen while serving a request.
	ErrStoreUnavailable = errors.New("cloakroom: session store unavailable")
	// ErrNoValue means the session holds no value under the key asked for.
	ErrNoValue = errors.New("cloakroom: no such session value")
	// ErrRotatedMeanwhile means another request of the same session renewed
	// it (Renew, RevokeOthers) while this one waited: the session lives on
	// under the token that request's response gave the browser. Nothing was
	// done, and this response leaves the browser's cookie alone.
	ErrRotatedMeanwhile = errors.New("cloakroom: the session was renewed by another request")
	// ErrInvalidInput reports an argument the caller must fix (an empty
	// user ID, a timeout above the configured maximum, ...). Stores
	// return it too, for a Rotation they must refuse (a Bump without a
	// user).
	ErrInvalidInput = errors.New("cloakroom: invalid input")
)

// Config configures a [Manager]. Only Store is required; every other field
// has a secure default, stated in its comment.
type Config struct {
	// Store keeps the sessions. Required.
	Store Store

	// CookieName is the session cookie's name. Default "__Host-Http-session":
	// the __Host- prefix makes browsers refuse the cookie unless it is
	// Secure, has Path=/ and no Domain; the Http- part (layered cookie
	// prefixes) makes them refuse it unless it is HttpOnly, and forbids page
	// script from creating or overwriting it.
	CookieName string
	// CookieDomain sets the cookie's Domain. Default empty (host-only),
	// which is what the __Host- prefix requires; a Domain with a __Host-
	// name is refused by New.
	CookieDomain string
	// SameSite is the cookie's SameSite mode: http.SameSiteLaxMode (the
	// default) or http.SameSiteStrictMode. None is refused.
	SameSite http.SameSite

	// IdleTimeout ends a session not used for this long. Default 30 minutes.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after login, however active.
	// Renewing the token never extends it. Default 12 hours.
	AbsoluteTimeout time.Duration
	// MaxIdleTimeout and MaxAbsoluteTimeout bound the per-session timeouts a
	// login may ask for (remember me). Default: IdleTimeout and
	// AbsoluteTimeout, so longer sessions need an explicit decision.
	MaxIdleTimeout     time.Duration
	MaxAbsoluteTimeout time.Duration
	// TouchInterval is how stale a session's last-seen time may get before a
	// request writes it back. Default one minute: a read-only request costs
	// no store write, and idle expiry is accurate to this interval.
	TouchInterval time.Duration

	// TrustedOrigins are origins ("https://sso.example.com") allowed to
	// send cross-origin unsafe requests. Default none.
	TrustedOrigins []string
	// RequireCSRFToken makes every unsafe request that carries a session
	// cookie present the session's token in the X-CSRF-Token header, not
	// only those without Sec-Fetch-Site and Origin. Default false.
	RequireCSRFToken bool
	// CSRFProof, when set, is asked about an unsafe request that rides on
	// a live session's cookie without an X-CSRF-Token header, when the
	// token would otherwise be needed (neither Sec-Fetch-Site nor Origin
	// came with it, or RequireCSRFToken is set): true lets it through as
	// the right token would. Answer true only for what a cross-site page
	// cannot send, such as a secret of the session in a header a page
	// cannot set cross-origin without a preflight (the token vault's
	// placeholder in Authorization). A wrong X-CSRF-Token is refused
	// whatever the hook says. Default nil: only the token proves.
	CSRFProof func(r *http.Request, s *Session) bool
	// Activity, when set, decides before the handler runs whether a
	// request of a live session is the user's activity, which moves the
	// session's idle deadline; false makes it passive, as
	// [Session.MarkPassive] does. The token vault uses it so that only
	// calls presenting the session's placeholder keep a session alive.
	// Default nil: every request is activity unless marked passive.
	Activity func(r *http.Request, s *Session) bool
	// Binding, when set, is asked about every request of a live,
	// logged-in session as it loads, before the CSRF check and the
	// handler: a session bound to its device (see package dbsc) must
	// present a second, short-lived credential only that device can
	// renew. A non-nil error makes the request continue as not logged
	// in, without ending the session, writing to the store or touching
	// its cookie; [Session.BindingErr] returns the error, so a handler
	// can say why (401, and the device refreshes its credential). The
	// hook must not block on the network: what it needs travels with the
	// session's values, which the load already read. Every consumer of
	// the manager (middleware, RequireLogin, forward auth, streams)
	// enforces it alike. Default nil: no binding.
	Binding func(r *http.Request, s *Session) error

	// RecheckInterval is how often sessions held open by [Session.Watch]
	// (streams, WebSockets) are checked against the store, a backstop for
	// a store that cannot notify ends or a notification that was missed.
	// Default 2 seconds.
	RecheckInterval time.Duration

	// Now is the clock. Default time.Now. Tests inject a fake one.
	Now func() time.Time
	// ClientIP extracts the client address recorded with a session. Default:
	// the host part of Request.RemoteAddr. Behind a proxy, return the
	// address from a header only that proxy can set.
	ClientIP func(*http.Request) string
	// Logger receives audit events (login, logout, revocation) and errors.
	// Tokens never appear in it, only a prefix of their SHA-256. Default
	// slog.Default().
	Logger *slog.Logger
	// OnError is called with every store error met while serving a request,
	// after the request has been made to fail closed. Default: log it.
	OnError func(r *http.Request, err error)
	// OnLoad, when set, is called after every session lookup in the store
	// with its outcome and duration, for metrics. Requests without a
	// well-formed session cookie make no lookup and no call. Default nil.
	OnLoad func(r *http.Request, outcome LoadOutcome, took time.Duration)
	// Unavailable writes the response when session changes cannot be saved
	// before the response starts. Default: 503 with a plain-text message.
	Unavailable http.Handler
	// Forbidden writes the response for a request refused as cross-site.
	// Default: 403 with a plain-text message.
	Forbidden http.Handler
}

// LoadOutcome is what a session lookup found; see Config.OnLoad.
type LoadOutcome uint8

// Outcomes of a session lookup.
const (
	LoadFound   LoadOutcome = iota + 1 // a live session
	LoadMissing                        // unknown, expired or revoked
	LoadFailed                         // the store failed; the request fails closed
)

// String returns "found", "missing" or "failed", for metric labels.
func (o LoadOutcome) String() string {
	switch o {
	case LoadFound:
		return "found"
	case LoadMissing:
		return "missing"
	case LoadFailed:
		return "failed"
	}
	return "unknown"
}

// Manager issues, loads and saves sessions. Create one with [New]; it is safe
// for concurrent use.
type Manager struct {
	cfg         Config
	store       Store
	now         func() time.Time
	crossOrigin *http.CrossOriginProtection
	trusted     map[string]bool // TrustedOrigins, normalised
	ctxKey      *contextKey
	logger      *slog.Logger
	watches     *watchHub
}

type contextKey struct{ name string }

// New validates cfg, fills in defaults and returns a Manager. Every problem
// in cfg is reported at once, each wrapped in ErrInvalidConfig.
func New(cfg Config) (*Manager, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if cfg.Store == nil {
		bad("Store is required")
	}
	if cfg.CookieName == "" {
		cfg.CookieName = DefaultCookieName
	}
	if !ValidCookieName(cfg.CookieName) {
		bad("CookieName %q is not a valid cookie name", cfg.CookieName)
	}
	lower := strings.ToLower(cfg.CookieName)
	if strings.HasPrefix(lower, "__host-") && cfg.CookieDomain != "" {
		bad("CookieName %q has the __Host- prefix, which forbids a Domain (got %q)", cfg.CookieName, cfg.CookieDomain)
	}
	if cfg.CookieDomain != "" && strings.ContainsAny(cfg.CookieDomain, ";, \t\r\n") {
		bad("CookieDomain %q contains a forbidden character", cfg.CookieDomain)
	}
	switch cfg.SameSite {
	case 0, http.SameSiteDefaultMode:
		cfg.SameSite = http.SameSiteLaxMode
	case http.SameSiteLaxMode, http.SameSiteStrictMode:
	case http.SameSiteNoneMode:
		bad("SameSite=None would send the session cookie with cross-site requests; use Lax or Strict")
	default:
		bad("SameSite %d is not a known mode", cfg.SameSite)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.AbsoluteTimeout, DefaultAbsoluteTimeout)
	def(&cfg.MaxIdleTimeout, cfg.IdleTimeout)
	def(&cfg.MaxAbsoluteTimeout, cfg.AbsoluteTimeout)
	def(&cfg.TouchInterval, DefaultTouchInterval)
	def(&cfg.RecheckInterval, DefaultRecheckInterval)
	for name, d := range map[string]time.Duration{
		"IdleTimeout": cfg.IdleTimeout, "AbsoluteTimeout": cfg.AbsoluteTimeout,
		"MaxIdleTimeout": cfg.MaxIdleTimeout, "MaxAbsoluteTimeout": cfg.MaxAbsoluteTimeout,
		"TouchInterval": cfg.TouchInterval, "RecheckInterval": cfg.RecheckInterval,
	} {
		if d < 0 {
			bad("%s must not be negative (got %v)", name, d)
		}
	}
	if cfg.IdleTimeout > cfg.AbsoluteTimeout {
		bad("IdleTimeout %v is longer than AbsoluteTimeout %v", cfg.IdleTimeout, cfg.AbsoluteTimeout)
	}
	if cfg.MaxIdleTimeout < cfg.IdleTimeout {
		bad("MaxIdleTimeout %v is shorter than IdleTimeout %v", cfg.MaxIdleTimeout, cfg.IdleTimeout)
	}
	if cfg.MaxAbsoluteTimeout < cfg.AbsoluteTimeout {
		bad("MaxAbsoluteTimeout %v is shorter than AbsoluteTimeout %v", cfg.MaxAbsoluteTimeout, cfg.AbsoluteTimeout)
	}
	if cfg.TouchInterval >= cfg.IdleTimeout {
		bad("TouchInterval %v must be shorter than IdleTimeout %v", cfg.TouchInterval, cfg.IdleTimeout)
	}
	cop := http.NewCrossOriginProtection()
	trusted := make(map[string]bool, len(cfg.TrustedOrigins))
	for _, o := range cfg.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			bad("TrustedOrigins: %v", err)
		}
		trusted[strings.TrimSuffix(o, "/")] = true
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = remoteHost
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg:         cfg,
		store:       cfg.Store,
		now:         cfg.Now,
		crossOrigin: cop,
		trusted:     trusted,
		ctxKey:      &contextKey{"cloakroom session"},
		logger:      cfg.Logger,
	}
	m.watches = newWatchHub(m)
	if m.cfg.OnError == nil {
		m.cfg.OnError = func(r *http.Request, err error) {
			m.logger.ErrorContext(r.Context(), "session store error", "err", err, "method", r.Method, "path", r.URL.Path)
		}
	}
	if m.cfg.Unavailable == nil {
		m.cfg.Unavailable = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Service Unavailable: the session store cannot be reached", http.StatusServiceUnavailable)
		})
	}
	if m.cfg.Forbidden == nil {
		m.cfg.Forbidden = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Forbidden: cross-site request refused", http.StatusForbidden)
		})
	}
	return m, nil
}

// Close stops the goroutines that watch held-open sessions (see
// [Session.Watch]), ending every watch. The manager stays usable for
// requests; it does not close the store.
func (m *Manager) Close() error {
	m.watches.close()
	return nil
}

// TrustedOrigin reports whether origin (an Origin header's value) is one of
// Config.TrustedOrigins: for checks CrossOriginProtection does not make,
// such as a WebSocket handshake, which is a GET.
func (m *Manager) TrustedOrigin(origin string) bool { return m.trusted[origin] }

// Config returns the manager's configuration with defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Store returns the manager's store.
func (m *Manager) Store() Store { return m.store }

// ValidCookieName reports whether name is an RFC 6265 cookie-name (a
// token): the check for every cookie name a configuration gives.
func ValidCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// FromContext returns the session that the manager's middleware attached to
// ctx. Outside the middleware it returns a session whose Err is
// ErrNoMiddleware and which is never logged in.
func (m *Manager) FromContext(ctx context.Context) *Session {
	if s, ok := ctx.Value(m.ctxKey).(*Session); ok {
		return s
	}
	return &Session{m: m, err: ErrNoMiddleware}
}

// Session returns the request's session; see [Manager.FromContext].
func (m *Manager) Session(r *http.Request) *Session { return m.FromContext(r.Context()) }

// Device describes one of a user's sessions for a device list. Handle
// identifies it publicly; it cannot be used to act as the session.
type Device struct {
	Handle  string `json:"handle"`
	Current bool   `json:"current"`
	// Name is what the user called the device ([Manager.NameDevice]), ""
	// when unnamed; Label is the browser and system its user agent says.
	Name           string    `json:"name,omitempty"`
	Label          string    `json:"label"`
	UserAgent      string    `json:"user_agent"`
	IP             string    `json:"ip"`
	CreatedAt      time.Time `json:"created_at"`
	LastSeen       time.Time `json:"last_seen"`
	IdleExpiry     time.Time `json:"idle_expires_at"`
	AbsoluteExpiry time.Time `json:"absolute_expires_at"`
	Persistent     bool      `json:"persistent"`
	// Bound reports whether the session is bound to a key its device
	// holds (package dbsc): it has a value under [BindingValue].
	Bound bool `json:"bound"`
}

// BindingValue is the session value under which a device binding (package
// dbsc) keeps the public key the session is bound to. It lives and dies
// with the session, survives its renewals, and is read with the session at
// no extra cost; [Device.Bound] reports it.
const BindingValue = "cloakroom.binding"

func deviceOf(rec *Record, current Key) Device {
	name, _, _ := lookupValue(rec.Data, deviceNameKey)
	_, bound, _ := lookupValue(rec.Data, BindingValue)
	return Device{Bound: bound,
		Handle: rec.Handle, Current: rec.Key == current, Name: string(name), Label: DeviceLabel(rec.UserAgent),
		UserAgent: rec.UserAgent, IP: rec.IP, CreatedAt: rec.CreatedAt, LastSeen: rec.LastSeen,
		IdleExpiry: rec.Expiry(), AbsoluteExpiry: rec.AbsoluteDeadline, Persistent: rec.Persistent,
	}
}

// Devices lists the live sessions of userID, oldest first.
func (m *Manager) Devices(ctx context.Context, userID string) ([]Device, error) {
	return m.devices(ctx, userID, Key{})
}

func (m *Manager) devices(ctx context.Context, userID string, current Key) ([]Device, error) {
	recs, err := m.store.List(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions: %w", ErrStoreUnavailable, err)
	}
	// Stores list in any order; the manager owns the order users see.
	slices.SortFunc(recs, func(a, b Record) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Handle, b.Handle)
	})
	out := make([]Device, 0, len(recs))
	for i := range recs {
		out = append(out, deviceOf(&recs[i], current))
	}
	return out, nil
}

// RevokeDevice ends the session of userID with the given public handle. It
// returns an error wrapping ErrNotFound when the user has no such session.
func (m *Manager) RevokeDevice(ctx context.Context, userID, handle string) error {
	if handle == "" {
		return fmt.Errorf("cloakroom: no session %q for user %q: %w", handle, userID, ErrNotFound)
	}
	ended, err := m.endHandle(ctx, userID, handle, Key{})
	for _, key := range ended {
		m.logger.InfoContext(ctx, "session revoked", "user", userID, "session", key.Short())
	}
	if err == nil && len(ended) == 0 {
		return fmt.Errorf("cloakroom: no session %q for user %q: %w", handle, userID, ErrNotFound)
	}
	return err
}

// deviceNameKey is the session value holding the device's name, kept with
// the session through renewals like any value.
const deviceNameKey = "cloakroom.device-name"

// MaxDeviceName bounds a device name, in characters.
const MaxDeviceName = 40

// NameDevice names (or, with "", unnames) userID's session with the given
// handle, so that two devices with the same browser can be told apart. It
// writes the session record without moving its last-seen time: naming a
// device from another one is not that device's activity. The name must be
// printable text of at most MaxDeviceName characters (ErrInvalidInput); a
// handle the user has no live session with wraps ErrNotFound.
func (m *Manager) NameDevice(ctx context.Context, userID, handle, name string) error {
	name = strings.TrimSpace(name)
	if err := checkDeviceName(name); err != nil {
		return err
	}
	for range maxCommitAttempts {
		rec, found, err := m.byHandle(ctx, userID, handle)
		if err != nil {
			return fmt.Errorf("%w: list sessions: %w", ErrStoreUnavailable, err)
		}
		if !found {
			return fmt.Errorf("cloakroom: no session %q for user %q: %w", handle, userID, ErrNotFound)
		}
		values, err := decodeValues(rec.Data)
		if err != nil {
			return fmt.Errorf("cloakroom: session %q: %w", handle, err)
		}
		if values == nil {
			values = map[string]string{}
		}
		if name == "" {
			delete(values, deviceNameKey)
		} else {
			values[deviceNameKey] = name
		}
		rec.Version++
		rec.Data = encodeValues(values)
		// The store refuses a stale version, a session ended meanwhile and
		// one of a past generation or epoch: look it up again and retry.
		switch err := m.store.Commit(ctx, rec); {
		case err == nil:
			return nil
		case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
			continue
		default:
			return fmt.Errorf("%w: name device: %w", ErrStoreUnavailable, err)
		}
	}
	return fmt.Errorf("%w: session %q changed %d times while being named", ErrStoreUnavailable, handle, maxCommitAttempts)
}

func checkDeviceName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxDeviceName {
		return fmt.Errorf("%w: a device name is at most %d characters", ErrInvalidInput, MaxDeviceName)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: a device name holds only printable characters", ErrInvalidInput)
		}
	}
	return nil
}

// endHandle ends userID's session with handle under whatever key it has by
// now, deleting known first when set, and returns the keys it deleted. A
// rotation (Renew, RevokeOthers) keeps the handle under a new key: if one
// lands between a look-up and the delete, the session lives on under its
// new key, so look again after every delete until the handle is gone. An
// anonymous session (no userID) cannot be listed: only known is deleted.
func (m *Manager) endHandle(ctx context.Context, userID, handle string, known Key) ([]Key, error) {
	var ended []Key
	key := known
	for {
		if key == (Key{}) {
			rec, found, err := m.byHandle(ctx, userID, handle)
			if err != nil {
				return ended, fmt.Errorf("%w: list sessions: %w", ErrStoreUnavailable, err)
			}
			if !found {
				return ended, nil
			}
			key = rec.Key
		}
		if len(ended) == maxCommitAttempts {
			return ended, fmt.Errorf("%w: session %q still renewed after %d deletes", ErrStoreUnavailable, handle, maxCommitAttempts)
		}
		if err := m.store.Delete(ctx, key); err != nil {
			return ended, fmt.Errorf("%w: delete session: %w", ErrStoreUnavailable, err)
		}
		m.watches.endKey(key)
		ended = append(ended, key)
		key = Key{}
	}
}

// byHandle returns userID's live session with handle, under whatever key
// rotations have given it.
func (m *Manager) byHandle(ctx context.Context, userID, handle string) (Record, bool, error) {
	if userID == "" || handle == "" {
		return Record{}, false, nil // anonymous sessions cannot be listed
	}
	recs, err := m.store.List(ctx, userID)
	if err != nil {
		return Record{}, false, err
	}
	i := slices.IndexFunc(recs, func(r Record) bool { return r.Handle == handle })
	if i < 0 {
		return Record{}, false, nil
	}
	return recs[i], true, nil
}

// RevokeUser ends every session of userID at once, on every node and in
// every cache, by bumping the user's generation. Call it when a password,
// role or other authentication factor changes, and when an account is
// disabled or deleted.
func (m *Manager) RevokeUser(ctx context.Context, userID string) error {
	if userID == "" {
		return fmt.Errorf("%w: empty user ID", ErrInvalidInput)
	}
	gen, err := m.store.BumpGeneration(ctx, userID)
	if err != nil {
		return fmt.Errorf("%w: bump generation: %w", ErrStoreUnavailable, err)
	}
	m.watches.endUser(userID, gen)
	m.logger.InfoContext(ctx, "all sessions revoked", "user", userID, "generation", gen)
	return nil
}

// RevokeEveryone ends every session at once: of every user, local or from
// any other sign-in, and anonymous, on every node and in every cache, with
// the auxiliary records bound to them (AuxRecord.EndsWithSessions), by
// bumping the store's global epoch. No request is accepted on a session
// that existed before once it returns, and a login whose credentials were
// being checked meanwhile fails (its pin holds the old epoch). Use it
// after an incident; sessions created afterwards live as usual.
func (m *Manager) RevokeEveryone(ctx context.Context) (epoch uint64, err error) {
	epoch, err = m.store.BumpEpoch(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: bump epoch: %w", ErrStoreUnavailable, err)
	}
	m.watches.endEpoch(epoch)
	m.logger.InfoContext(ctx, "every session revoked", "epoch", epoch)
	return epoch, nil
}
