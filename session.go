package cloakroom

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Session is one request's view of its session. Get one with
// [Manager.Session] inside the middleware. Value changes are saved when the
// response starts; Login, Renew, Logout and revocations reach the store at
// once and return its errors.
//
// A Session is safe for concurrent use by the goroutines of one request.
type Session struct {
	m   *Manager
	mu  sync.Mutex
	err error // store failure while loading; the request is then not logged in

	loadedAt time.Time // the clock when the request arrived

	token string // raw token from the cookie or newly issued; never logged
	rec   Record
	live  bool          // rec is a live session in the store
	req   *http.Request // for the client's address and agent, read only when a session is created

	values  map[string]string // decoded rec.Data, after the first change
	changes []change          // value changes, re-applied on a version conflict

	passive   bool // not user activity: the idle deadline does not move
	issued    bool // a new token must be sent as a cookie
	destroyed bool // the cookie must be expired (unknown, expired or ended session)
	ended     bool // ended in this request (logout, revocation): also Clear-Site-Data

	cookieSent bool  // the request carried a well-formed session token
	unbound    error // Config.Binding refused the request; the session lives on
}

type change struct {
	key, value string
	remove     bool
}

// LoginOptions adjusts one login. The zero value gives a browser-session
// cookie with the manager's default timeouts.
type LoginOptions struct {
	// Persistent ("remember me") gives the cookie a Max-Age so it outlives
	// the browser session.
	Persistent bool
	// IdleTimeout and AbsoluteTimeout override the manager's defaults for
	// this session, up to Config.MaxIdleTimeout and MaxAbsoluteTimeout.
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// Pin, from [Manager.Pin], makes the login fail if the user's
	// generation moved since it was taken. Default: no pin; the generation
	// is read at login.
	Pin Pin
	// Values are the new session's first values, stored in the login's
	// single write.
	Values map[string]string
}

// Err returns the store error met while loading the session, if any. A
// request with an Err is never logged in; handlers that need a session
// should answer 503 rather than 401 (see [Manager.RequireLogin]).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// BindingErr returns why Config.Binding refused this request of a live
// session (a device-bound session without its bound credential), or nil.
// Such a request is not logged in, but its session was not ended: the
// device can refresh its credential and try again.
func (s *Session) BindingErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unbound
}

// LoggedIn reports whether the request belongs to a live, authenticated
// session.
func (s *Session) LoggedIn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live && s.rec.UserID != ""
}

// UserID returns the logged-in user's ID, or "".
func (s *Session) UserID() string {
	return s.whileLive(func() string { return s.rec.UserID })
}

// Handle returns the session's public handle, as listed in device lists, or
// "" without a session.
func (s *Session) Handle() string {
	return s.whileLive(func() string { return s.rec.Handle })
}

// whileLive returns what read returns, called under the session's lock,
// or "" without a live session.
func (s *Session) whileLive(read func() string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live {
		return ""
	}
	return read()
}

// Ref returns a short reference to the session for log lines: the first 12
// hex digits of the SHA-256 of its token. It is safe to log, and names the
// session ended in this request after a logout. It is "" without a session.
func (s *Session) Ref() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec.Key == (Key{}) {
		return ""
	}
	return s.rec.Key.Short()
}

// CookieSent reports whether the request carried a well-formed session
// cookie, whether or not it named a live session (it may be unknown,
// expired, revoked, or unchecked because the store failed). A request
// without one, or with a malformed one, was never looked up in the store.
// Origin checks that must refuse anything riding on the cookie use it.
func (s *Session) CookieSent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cookieSent
}

// MarkPassive declares that the request is not user activity (a status
// poll, say): the middleware will not move the session's idle deadline for
// it, so polling cannot keep an abandoned session alive.
func (s *Session) MarkPassive() {
	s.mu.Lock()
	s.passive = true
	s.mu.Unlock()
}

// CSRFToken returns the session's synchronizer token for the X-CSRF-Token
// header, or "" without a session. Hand it to the page (for example in a
// JSON response); never put it in a URL.
func (s *Session) CSRFToken() string {
	return s.whileLive(func() string { return csrfTokenFor(s.token) })
}

// Times reports when the session was created, when it will expire if left
// idle, and when it will expire regardless. Reading them does not extend the
// session. All are zero without a session.
func (s *Session) Times() (created, idleExpiry, absoluteExpiry time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.live {
		return
	}
	return s.rec.CreatedAt, s.rec.Expiry(), s.rec.AbsoluteDeadline
}

// Get returns the value stored under key.
func (s *Session) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values != nil {
		v, ok := s.values[key]
		return v, ok
	}
	if !s.live {
		return "", false
	}
	v, ok, err := lookupValue(s.rec.Data, key)
	if err != nil || !ok {
		return "", false
	}
	return string(v), true
}

// GetString returns the value stored under key, or "".
func (s *Session) GetString(key string) string {
	v, _ := s.Get(key)
	return v
}

// GetInt returns the integer stored under key with PutInt.
func (s *Session) GetInt(key string) (int64, bool) {
	v, ok := s.Get(key)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// GetBool returns the boolean stored under key with PutBool.
func (s *Session) GetBool(key string) bool {
	v, _ := s.Get(key)
	return v == "true"
}

// GetTime returns the time stored under key with PutTime.
func (s *Session) GetTime(key string) (time.Time, bool) {
	v, ok := s.Get(key)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// GetJSON decodes the JSON value stored under key with PutJSON into v. It
// returns ErrNoValue (wrapped) when there is no such value.
func (s *Session) GetJSON(key string, v any) error {
	raw, ok := s.Get(key)
	if !ok {
		return fmt.Errorf("cloakroom: session value %q: %w", key, ErrNoValue)
	}
	return json.Unmarshal([]byte(raw), v)
}

// Put stores value under key. Without a session, the first Put starts an
// anonymous one (a cart, say); Login later replaces it.
func (s *Session) Put(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(change{key: key, value: value})
}

// PutInt stores n under key.
func (s *Session) PutInt(key string, n int64) { s.Put(key, strconv.FormatInt(n, 10)) }

// PutBool stores b under key.
func (s *Session) PutBool(key string, b bool) { s.Put(key, strconv.FormatBool(b)) }

// PutTime stores t under key.
func (s *Session) PutTime(key string, t time.Time) { s.Put(key, t.Format(time.RFC3339Nano)) }

// PutJSON stores v, encoded as JSON, under key.
func (s *Session) PutJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cloakroom: session value %q: %w", key, err)
	}
	s.Put(key, string(b))
	return nil
}

// Remove deletes the value under key.
func (s *Session) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(change{key: key, remove: true})
}

func (s *Session) applyLocked(c change) {
	if s.values == nil {
		s.values = s.decodedLocked()
	}
	if c.remove {
		if _, ok := s.values[c.key]; !ok {
			return
		}
		delete(s.values, c.key)
	} else {
		if v, ok := s.values[c.key]; ok && v == c.value {
			return
		}
		s.values[c.key] = c.value
	}
	s.changes = append(s.changes, c)
}

func (s *Session) decodedLocked() map[string]string {
	if !s.live {
		return make(map[string]string)
	}
	m, err := decodeValues(s.rec.Data)
	if err != nil {
		// Corrupt values are dropped rather than failing every request of
		// the session; the next save writes a clean encoding.
		return make(map[string]string)
	}
	return m
}

// ClientIP returns the address of the client that sent the request, as
// Config.ClientIP reads it (behind a trusted proxy, the address that proxy
// reports): the one owner of that fact for audit lines and throttles.
func (s *Session) ClientIP() string { return s.clientIP() }

// ValidCSRFToken reports whether token is this session's synchronizer
// token (see [Session.CSRFToken]), compared in constant time: for a token a
// form carries in a field, which the middleware does not read. It is false
// without a live session.
func (s *Session) ValidCSRFToken(token string) bool {
	want := s.CSRFToken()
	return want != "" && len(token) == len(want) && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// clientIP and userAgent describe the client for a new session's device
// entry; reading them only then keeps them off the per-request path.
func (s *Session) clientIP() string {
	if s.req == nil {
		return ""
	}
	return s.m.cfg.ClientIP(s.req)
}

func (s *Session) userAgent() string {
	if s.req == nil {
		return ""
	}
	ua := s.req.UserAgent()
	if len(ua) > maxUserAgentLength {
		ua = ua[:maxUserAgentLength]
	}
	return ua
}

// handleBytes is the randomness of a session handle.
const handleBytes = 16

func newHandle() string {
	var b [handleBytes]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidHandle reports whether h has the form of a session handle (see
// [Session.Handle]): the check for a handle taken from a URL or a form
// before it is looked up.
func ValidHandle(h string) bool {
	if len(h) != base64.RawURLEncoding.EncodedLen(handleBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(h)
	return err == nil
}

func (s *Session) storeErr(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrStoreUnavailable, op, err)
}

// Pin is what a login checked against, read before the user's credentials
// were checked: the user's generation and the global epoch; see
// [Manager.Pin] and LoginOptions.Pin. The zero Pin pins nothing.
type Pin struct {
	userID     string
	generation uint64
	epoch      uint64
	set        bool // userID and generation are pinned
	epochSet   bool
}

// Pin reads userID's generation and the global epoch for a later
// [Session.Login] with LoginOptions.Pin. Call it before reading the account
// record and checking the password: if the account changes meanwhile
// (disabled, password or roles changed, all of which revoke the user's
// sessions), or every session is revoked ([Manager.RevokeEveryone]), the
// login then fails instead of starting a session with what was read
// before.
func (m *Manager) Pin(ctx context.Context, userID string) (Pin, error) {
	if userID == "" || len(userID) > maxUserIDLength {
		return Pin{}, fmt.Errorf("%w: user ID must be 1 to %d bytes", ErrInvalidInput, maxUserIDLength)
	}
	p, err := m.PinEpoch(ctx)
	if err != nil {
		return Pin{}, err
	}
	gen, err := m.store.Generation(ctx, userID)
	if err != nil {
		return Pin{}, fmt.Errorf("%w: read generation: %w", ErrStoreUnavailable, err)
	}
	p.userID, p.generation, p.set = userID, gen, true
	return p, nil
}

// PinEpoch reads the global epoch only, for a sign-in whose user is not
// known before the credentials are checked (an upstream app's login answer
// names them): a global revocation while they are checked makes the login
// fail. The user's generation is then read at login.
func (m *Manager) PinEpoch(ctx context.Context) (Pin, error) {
	epoch, err := m.store.Epoch(ctx)
	if err != nil {
		return Pin{}, fmt.Errorf("%w: read epoch: %w", ErrStoreUnavailable, err)
	}
	return Pin{epoch: epoch, epochSet: true}, nil
}

// Login starts an authenticated session for userID. It always issues a new
// token and deletes the request's previous session in the same store
// operation, so a token planted before login is useless afterwards (no
// fixation). Values of the previous session are not carried over;
// opts.Values are stored with the new session in the same write.
//
// With opts.Pin, the login fails with an error wrapping ErrNotLoggedIn,
// creating nothing, if the user's generation or the global epoch moved
// since the pin was taken.
func (s *Session) Login(ctx context.Context, userID string, opts LoginOptions) error {
	if userID == "" || len(userID) > maxUserIDLength {
		return fmt.Errorf("%w: user ID must be 1 to %d bytes", ErrInvalidInput, maxUserIDLength)
	}
	if opts.Pin.set && opts.Pin.userID != userID {
		return fmt.Errorf("%w: the pin was taken for another user", ErrInvalidInput)
	}
	m := s.m
	idle, absolute := m.cfg.IdleTimeout, m.cfg.AbsoluteTimeout
	if opts.IdleTimeout != 0 {
		idle = opts.IdleTimeout
	}
	if opts.AbsoluteTimeout != 0 {
		absolute = opts.AbsoluteTimeout
	}
	switch {
	case idle <= m.cfg.TouchInterval || idle > m.cfg.MaxIdleTimeout:
		return fmt.Errorf("%w: idle timeout %v outside (%v, %v]", ErrInvalidInput, idle, m.cfg.TouchInterval, m.cfg.MaxIdleTimeout)
	case absolute < idle || absolute > m.cfg.MaxAbsoluteTimeout:
		return fmt.Errorf("%w: absolute timeout %v outside [%v, %v]", ErrInvalidInput, absolute, idle, m.cfg.MaxAbsoluteTimeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	gen, epoch := opts.Pin.generation, opts.Pin.epoch
	if !opts.Pin.epochSet {
		var err error
		if epoch, err = m.store.Epoch(ctx); err != nil {
			return s.storeErr("read epoch", err)
		}
	}
	if !opts.Pin.set {
		var err error
		if gen, err = m.store.Generation(ctx, userID); err != nil {
			return s.storeErr("read generation", err)
		}
	}
	now := m.now()
	rec := Record{
		Handle: newHandle(), UserID: userID, Generation: gen, Epoch: epoch, Version: 1,
		CreatedAt: now, LastSeen: now, IdleTimeout: idle, AbsoluteDeadline: now.Add(absolute),
		Persistent: opts.Persistent, IP: s.clientIP(), UserAgent: s.userAgent(),
	}
	if len(opts.Values) > 0 {
		rec.Data = encodeValues(opts.Values)
	}
	if err := s.rotateLocked(ctx, rec, false, false, "login"); err != nil {
		return err
	}
	s.values, s.changes = nil, nil
	m.logger.InfoContext(ctx, "login", "user", userID, "session", s.rec.Key.Short(), "ip", s.rec.IP)
	return nil
}

// rotateLocked stores rec under a new token and deletes the request's
// current session, in one store operation (see [Rotator]). With
// oldMustLive, nothing is created unless the current session is still live
// with its user's current generation; bump also revokes every other session
// of the user. When the current session turned out to be dead, the request
// loses it and the error wraps ErrNotLoggedIn.
func (s *Session) rotateLocked(ctx context.Context, rec Record, oldMustLive, bump bool, op string) error {
	token, key := newToken()
	rec.Key = key
	var old Key
	var oldVersion uint64
	if s.live {
		old = s.rec.Key
		// What rec carries over was read at this version (renewals).
		oldVersion = s.rec.Version
	}
	stored, err := s.m.store.Rotate(ctx, Rotation{Old: old, OldMustLive: oldMustLive, OldVersion: oldVersion, New: rec, Bump: bump})
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			return s.storeErr(op, err)
		}
		if oldMustLive {
			if renewed, _ := s.renewedMeanwhileLocked(ctx); renewed {
				return fmt.Errorf("%w: %s", ErrRotatedMeanwhile, op)
			}
			s.live, s.destroyed, s.ended, s.issued = false, true, true, false
			s.values, s.changes = nil, nil
		}
		return fmt.Errorf("%w: %s: the session or the user's sessions ended meanwhile: %w", ErrNotLoggedIn, op, err)
	}
	if old != (Key{}) {
		s.m.watches.endKey(old)
	}
	if bump {
		s.m.watches.endUser(stored.UserID, stored.Generation)
	}
	s.token, s.rec, s.live = token, stored, true
	s.issued, s.destroyed, s.ended = true, false, false
	return nil
}

// renewedMeanwhileLocked reports whether the session, whose key is gone,
// lives on under the same handle: another request of it renewed it. The
// request then keeps its view of the old key: a change it saves lands on
// the renewed session, and its response leaves the browser's cookie (the
// renewing response's) alone. A store failure counts as ended (fail
// closed), and the error is returned for the caller to report.
func (s *Session) renewedMeanwhileLocked(ctx context.Context) (bool, error) {
	_, found, err := s.m.byHandle(ctx, s.rec.UserID, s.rec.Handle)
	return err == nil && found, err
}

// Renew issues a new token for the current session and deletes the old
// one, keeping the user, the handle, the values and the absolute deadline.
// Call it when privileges change (after a step-up authentication, say). If
// the session ended meanwhile (a logout or revocation elsewhere), nothing
// is created and the error wraps ErrNotLoggedIn; if another request of the
// session renewed it first, nothing is done, the error wraps
// ErrRotatedMeanwhile and the browser's cookie is left alone.
//
// Deleting the old token ends its [Session.Watch] streams, on this node at
// once and on others through the store's notifications, as a logout would:
// the client must re-open its streams and WebSockets with the new cookie.
func (s *Session) Renew(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if !s.live {
		return ErrNotLoggedIn
	}
	return s.renewLocked(ctx, false, "renew")
}

// renewLocked rotates the session into a new key with its values. The
// store refuses the rotation if another request committed the session
// since this one read it (a privilege removed, say), so it reloads the
// session, re-applies this request's changes on top, and tries again, as
// commitChangesLocked does for a plain save.
func (s *Session) renewLocked(ctx context.Context, bump bool, op string) error {
	for attempt := 1; ; attempt++ {
		rec := s.rec
		rec.Version, rec.LastSeen = 1, s.m.now()
		if s.values != nil {
			rec.Data = encodeValues(s.values)
		}
		err := s.rotateLocked(ctx, rec, true, bump, op)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if attempt == maxCommitAttempts {
			return s.storeErr(op, fmt.Errorf("still conflicting after %d attempts: %w", maxCommitAttempts, ErrConflict))
		}
		fresh, found, err := s.m.store.Find(ctx, s.rec.Key)
		if err != nil {
			return s.storeErr("reload session", err)
		}
		if !found {
			// Ended, or rotated by another request, since the conflict:
			// as when the rotation itself finds the session gone.
			if renewed, _ := s.renewedMeanwhileLocked(ctx); renewed {
				return fmt.Errorf("%w: %s", ErrRotatedMeanwhile, op)
			}
			s.live, s.destroyed, s.ended, s.issued = false, true, true, false
			s.values, s.changes = nil, nil
			return fmt.Errorf("%w: %s: the session ended meanwhile: %w", ErrNotLoggedIn, op, ErrNotFound)
		}
		s.rebaseLocked(fresh)
	}
	s.changes = nil
	s.m.logger.InfoContext(ctx, "session renewed", "user", s.rec.UserID, "session", s.rec.Key.Short())
	return nil
}

// Logout deletes the session from the store, so its token never works
// again, and expires the cookie with Clear-Site-Data. The cookie is expired
// even when the store fails; the error then says the server-side session may
// still exist.
//
// A logged-in session is ended by its handle, which its rotations keep: if
// another request of the session renewed it (Renew, RevokeOthers) while
// this one waited, the renewed session and its Watch streams end too. An
// anonymous session has no user to list its sessions by, so only the key
// this request presented is deleted: a renewal of it racing the logout
// survives, holding the values but no identity, until it expires.
func (s *Session) Logout(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.destroyed, s.ended, s.issued = true, true, false
	s.values, s.changes = nil, nil
	if !s.live {
		// A session that could not be loaded may still exist in the store:
		// say so rather than report a logout that did not happen.
		return s.err
	}
	s.live = false
	ended, err := s.m.endHandle(ctx, s.rec.UserID, s.rec.Handle, s.rec.Key)
	if len(ended) > 0 {
		// The line names the session this request presented (its Ref);
		// renewals of it ended with it are listed after.
		attrs := []any{"user", s.rec.UserID, "session", s.rec.Key.Short()}
		if len(ended) > 1 {
			renewed := make([]string, 0, len(ended)-1)
			for _, k := range ended[1:] {
				renewed = append(renewed, k.Short())
			}
			attrs = append(attrs, "renewed", renewed)
		}
		s.m.logger.InfoContext(ctx, "logout", attrs...)
	}
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

// Devices lists the sessions of the logged-in user, the current one marked.
func (s *Session) Devices(ctx context.Context) ([]Device, error) {
	s.mu.Lock()
	user, key, live := s.rec.UserID, s.rec.Key, s.live
	s.mu.Unlock()
	if !live || user == "" {
		return nil, ErrNotLoggedIn
	}
	return s.m.devices(ctx, user, key)
}

// RevokeDevice ends one of the logged-in user's sessions by its handle. If
// it is the current one, this is a Logout.
func (s *Session) RevokeDevice(ctx context.Context, handle string) error {
	s.mu.Lock()
	user, own, live := s.rec.UserID, s.rec.Handle, s.live
	s.mu.Unlock()
	if !live || user == "" {
		return ErrNotLoggedIn
	}
	if handle == own {
		return s.Logout(ctx)
	}
	return s.m.RevokeDevice(ctx, user, handle)
}

// RevokeOthers ends every other session of the logged-in user and keeps
// this one under a new token. It bumps the user's generation, so sessions
// created meanwhile on other nodes, and cached copies, die too. The check
// that this session still lives, the bump and the new token are one store
// operation: if the session was ended meanwhile, nothing is revoked or
// created and the error wraps ErrNotLoggedIn; if another request of the
// session renewed it first, the error wraps ErrRotatedMeanwhile and the
// browser's cookie is left alone.
//
// Like [Session.Renew], it ends the Watch streams opened under the old
// token, this session's own included: the client must re-open them with
// the new cookie.
func (s *Session) RevokeOthers(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if !s.live || s.rec.UserID == "" {
		return ErrNotLoggedIn
	}
	if err := s.renewLocked(ctx, true, "revoke others"); err != nil {
		return err
	}
	s.m.logger.InfoContext(ctx, "other sessions revoked", "user", s.rec.UserID, "generation", s.rec.Generation)
	return nil
}

// LogoutEverywhere ends every session of the logged-in user, this one
// included, and expires the cookie.
func (s *Session) LogoutEverywhere(ctx context.Context) error {
	s.mu.Lock()
	user, live := s.rec.UserID, s.live
	s.mu.Unlock()
	if !live || user == "" {
		return ErrNotLoggedIn
	}
	if err := s.m.RevokeUser(ctx, user); err != nil {
		return err
	}
	s.mu.Lock()
	s.live, s.destroyed, s.ended, s.issued = false, true, true, false
	s.values, s.changes = nil, nil
	s.mu.Unlock()
	return nil
}
