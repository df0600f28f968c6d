package cloakroom

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxCommitAttempts bounds how often a save is retried after version
// conflicts with concurrent requests of the same session.
const maxCommitAttempts = 8

// CSRFHeader is the request header that carries the session's synchronizer
// token (see [Session.CSRFToken]).
const CSRFHeader = "X-CSRF-Token"

// variesByCookie reports whether Vary header values already name Cookie
// (or "*").
func variesByCookie(vary []string) bool {
	for _, line := range vary {
		for field := range strings.SplitSeq(line, ",") {
			if f := strings.TrimSpace(field); f == "*" || strings.EqualFold(f, "Cookie") {
				return true
			}
		}
	}
	return false
}

// Shared header values, assigned without allocating. net/http only reads
// them; appending to a header reallocates because their capacity is full.
var (
	varyCookie = []string{"Cookie"}
	noStore    = []string{"no-store"}
	// Not "cookies": browsers clear those for the whole registrable
	// domain, an identity provider's session cookie on a sibling host
	// and the known-device cookie of the login throttle included. The
	// session cookie is expired by name instead.
	clearSite = []string{`"storage"`}
)

// Handler is the session middleware. It refuses cross-site unsafe requests
// (net/http's CrossOriginProtection, then the synchronizer token for cookie
// requests that carry neither Sec-Fetch-Site nor Origin), loads the session
// named by the cookie, attaches it to the request context, and saves changes
// and sets the cookie before the response's first byte.
//
// A store failure fails closed: the request continues as not logged in,
// [Session.Err] reports the failure, and Config.OnError is called.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return &sessionHandler{m: m, next: next}
}

// sessionHandler is the middleware as a type rather than a closure: a
// closure returned by Handler would be inlined into the caller's package,
// where the calls inside it are no longer inlined (WithContext's request
// copy then escapes to the heap).
type sessionHandler struct {
	m    *Manager
	next http.Handler
}

func (h *sessionHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, next := h.m, h.next
	if err := m.crossOrigin.Check(r); err != nil {
		m.cfg.Forbidden.ServeHTTP(w, r)
		return
	}
	sw := &sessionWriter{ResponseWriter: w}
	s := &sw.session
	s.m = m
	s.loadedAt = m.now()
	s.req = r
	cookiePresent := m.load(r, s)
	if s.live && s.rec.UserID != "" && m.cfg.Binding != nil {
		if err := m.cfg.Binding(r, s); err != nil {
			// Not logged in for this request, but the session lives on:
			// nothing is written back and its cookie stays.
			s.live, s.unbound = false, err
		}
	}
	if cookiePresent && !isSafeMethod(r.Method) && !m.csrfOK(r, s) {
		m.cfg.Forbidden.ServeHTTP(w, r)
		return
	}
	if s.live && m.cfg.Activity != nil && !m.cfg.Activity(r, s) {
		s.passive = true
	}
	// The context and the request copy live in the writer's
	// allocation: no separate context.WithValue and request per
	// request. (WithContext is inlined and its copy does not escape.)
	sw.ctx = sessionContext{Context: r.Context(), session: s}
	sw.req = *r.WithContext(&sw.ctx)
	s.req = &sw.req
	next.ServeHTTP(sw, &sw.req)
	sw.finish()
}

// load fills s from the request's cookie. It reports whether the request
// carried a well-formed session token.
func (m *Manager) load(r *http.Request, s *Session) bool {
	// One session cookie, or none: a repeated one may be planted.
	token, err := CookieValue(r.Header, m.cfg.CookieName)
	if err != nil {
		return false
	}
	key, ok := ParseToken(token)
	if !ok {
		return false
	}
	s.cookieSent = true
	var start time.Time
	if m.cfg.OnLoad != nil {
		start = time.Now()
	}
	rec, found, err := m.store.Find(r.Context(), key)
	outcome := LoadFound
	switch {
	case err != nil:
		outcome = LoadFailed
		s.rec.Key = key // for Ref in log lines
		s.err = fmt.Errorf("%w: find session %s: %w", ErrStoreUnavailable, key.Short(), err)
		m.cfg.OnError(r, s.err)
	case !found || rec.Key != key || rec.Expired(s.loadedAt):
		// Unknown, expired or revoked: have the browser drop the cookie.
		outcome = LoadMissing
		s.destroyed = true
		s.rec.Key = key // for Ref in log lines
	default:
		s.token, s.rec, s.live = token, rec, true
	}
	if m.cfg.OnLoad != nil {
		m.cfg.OnLoad(r, outcome, time.Since(start))
	}
	return true
}

func isSafeMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// csrfOK is the layer above CrossOriginProtection, which lets through unsafe
// requests carrying neither Sec-Fetch-Site nor Origin (old browsers, or a
// proxy that strips them). A request that rides on a session cookie must
// then prove it came from our page with the synchronizer token.
//
// A request that presents a token must present the right one, whatever its
// Fetch Metadata says: a wrong token is a forgery or a stale page. One
// without a token may prove itself another way (Config.CSRFProof).
func (m *Manager) csrfOK(r *http.Request, s *Session) bool {
	if !s.live {
		return true // no live session, so no ambient authority to abuse
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" && !m.cfg.RequireCSRFToken && (r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Origin") != "") {
		return true // CrossOriginProtection has judged this request
	}
	if got == "" && m.cfg.CSRFProof != nil {
		return m.cfg.CSRFProof(r, s)
	}
	want := csrfTokenFor(s.token)
	return len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// RequireLogin answers 503 when the session store failed and 401 when the
// request is not logged in; otherwise it calls next. Use it inside Handler.
func (m *Manager) RequireLogin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		if err := s.Err(); err != nil {
			m.cfg.Unavailable.ServeHTTP(w, r)
			return
		}
		if s.BindingErr() != nil {
			http.Error(w, "Unauthorized: this session is bound to a device; its device credential is missing or expired", http.StatusUnauthorized)
			return
		}
		if !s.LoggedIn() {
			http.Error(w, "Unauthorized: log in first", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sessionWriter saves the session and writes its headers just before the
// response starts. The session lives inside it so one allocation covers
// both.
type sessionWriter struct {
	http.ResponseWriter
	ctx      sessionContext
	session  Session
	req      http.Request // the request as the handler sees it, with ctx
	started  bool
	failed   bool // the save failed and Unavailable answered instead
	hijacked bool // the handler took the connection over
}

func (w *sessionWriter) WriteHeader(code int) {
	if w.hijacked {
		return // net/http would refuse it, and log
	}
	if !w.started {
		w.started = true
		if !w.save() {
			w.failed = true
			w.session.m.cfg.Unavailable.ServeHTTP(w.ResponseWriter, &w.req)
			return
		}
	}
	if w.failed {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// ready starts the response as a body write does: it fails after a
// hijack, and when the session could not be saved (Unavailable answered
// instead, so the handler's body must not follow).
func (w *sessionWriter) ready() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return ErrStoreUnavailable
	}
	return nil
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	if err := w.ready(); err != nil {
		return 0, err
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers flush through the middleware.
func (w *sessionWriter) Flush() {
	if w.ready() != nil {
		return
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// WriteString spares handlers that use io.WriteString a conversion.
func (w *sessionWriter) WriteString(str string) (int, error) {
	if err := w.ready(); err != nil {
		return 0, err
	}
	return io.WriteString(w.ResponseWriter, str)
}

// Hijack saves the session before handing the connection over, as a
// response's first byte would: its headers (a new cookie, Vary,
// Cache-Control) are then in the header map, which httputil.ReverseProxy
// writes with its 101, and nothing goes through the middleware after it.
// When the save fails, the request is answered 503 instead and the
// connection is not handed over.
func (w *sessionWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.failed {
		return nil, nil, ErrStoreUnavailable
	}
	if !w.started {
		w.started = true
		if !w.save() {
			w.failed = true
			w.session.m.cfg.Unavailable.ServeHTTP(w.ResponseWriter, &w.req)
			return nil, nil, ErrStoreUnavailable
		}
	}
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sessionContext carries the request's session. It does what
// context.WithValue would, inside the writer's allocation.
type sessionContext struct {
	context.Context
	session *Session
}

func (c *sessionContext) Value(key any) any {
	if k, ok := key.(*contextKey); ok && k == c.session.m.ctxKey {
		return c.session
	}
	return c.Context.Value(key)
}

// finish runs after the handler: a handler that wrote nothing still gets its
// session saved and its headers set.
func (w *sessionWriter) finish() {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
}

// save persists value changes or a due last-seen update and sets the
// response headers. It reports false when changes could not be saved.
func (w *sessionWriter) save() bool {
	s, m, r := &w.session, w.session.m, &w.req
	s.mu.Lock()
	defer s.mu.Unlock()
	h := w.ResponseWriter.Header()
	// Add to Vary, never replace: a handler's Vary: Accept-Encoding must
	// survive, or a shared cache serves the wrong variant.
	if vary := h["Vary"]; len(vary) == 0 {
		h["Vary"] = varyCookie
	} else if !variesByCookie(vary) {
		h["Vary"] = append(vary, "Cookie")
	}
	// Changes made while the store was unreachable cannot be saved, and a
	// response must not pretend they were.
	ok := s.err == nil || len(s.changes) == 0
	if s.err == nil {
		var err error
		switch {
		case len(s.changes) > 0 && !s.live && !s.ended:
			err = s.createAnonymousLocked(r.Context())
		case len(s.changes) > 0 && s.live:
			err = s.commitChangesLocked(r.Context())
		case s.live && !s.passive && s.loadedAt.Sub(s.rec.LastSeen) >= m.cfg.TouchInterval:
			s.touchLocked(r)
		}
		if err != nil {
			ok = false
			s.err = err
			m.cfg.OnError(r, err)
		}
	}
	switch {
	case s.issued && s.live:
		h["Set-Cookie"] = append(h["Set-Cookie"], m.cookie(s.token, s.rec))
	case s.destroyed:
		h["Set-Cookie"] = append(h["Set-Cookie"], m.expiredCookie())
		if s.ended {
			h["Clear-Site-Data"] = clearSite
		}
	}
	if s.live || s.issued || s.destroyed {
		h["Cache-Control"] = noStore
	}
	return ok
}

func (s *Session) createAnonymousLocked(ctx context.Context) error {
	epoch, err := s.m.store.Epoch(ctx)
	if err != nil {
		return s.storeErr("read epoch", err)
	}
	now := s.m.now()
	rec := Record{
		Handle: newHandle(), Version: 1, Epoch: epoch, CreatedAt: now, LastSeen: now,
		IdleTimeout: s.m.cfg.IdleTimeout, AbsoluteDeadline: now.Add(s.m.cfg.AbsoluteTimeout),
		IP: s.clientIP(), UserAgent: s.userAgent(), Data: encodeValues(s.values),
	}
	if err := s.rotateLocked(ctx, rec, false, false, "create session"); err != nil {
		return err
	}
	s.changes = nil
	return nil
}

// commitChangesLocked saves value changes with optimistic concurrency: on a
// version conflict it reloads the session and re-applies this request's
// changes on top, so concurrent requests that set different keys keep both
// writes; for the same key the last to save wins. A session another
// request rotated meanwhile is reloaded under its new key, by its handle.
func (s *Session) commitChangesLocked(ctx context.Context) error {
	loaded, view := s.rec, s.values
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		rec := s.rec
		rec.Version++
		if !s.passive {
			rec.LastSeen = s.m.now()
		}
		rec.Data = encodeValues(s.values)
		err := s.m.store.Commit(ctx, rec)
		switch {
		case err == nil:
			s.rec, s.changes = rec, nil
			if rec.Key != loaded.Key {
				// The change landed on the renewed session, but this
				// request presented the old token: it keeps its view of
				// the old session (with its own changes), and never
				// takes up what came with the renewal (a step-up's
				// privilege) or holds a Watch on the new key.
				s.rec, s.values = loaded, view
			}
			return nil
		case !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound):
			return s.storeErr("save session", err)
		}
		// Another request wrote the session, or rotated it (Renew,
		// RevokeOthers: same handle, new key): the changes go on top of
		// the session as it is now. The rotating response carries the
		// new cookie, so this one leaves the browser's cookie alone.
		fresh, found, err := s.m.store.Find(ctx, s.rec.Key)
		if err == nil && !found {
			fresh, found, err = s.m.byHandle(ctx, s.rec.UserID, s.rec.Handle)
		}
		if err != nil {
			return s.storeErr("reload session", err)
		}
		if !found {
			// Logged out or revoked meanwhile: the changes belong to a dead
			// session and are dropped; the browser drops its cookie.
			s.live, s.destroyed, s.issued, s.changes = false, true, false, nil
			return nil
		}
		s.rebaseLocked(fresh)
	}
	return s.storeErr("save session", fmt.Errorf("still conflicting after %d attempts: %w", maxCommitAttempts, ErrConflict))
}

// rebaseLocked makes fresh, the session as stored now, the request's
// session, with the request's unsaved changes applied on top.
func (s *Session) rebaseLocked(fresh Record) {
	s.rec = fresh
	if s.values == nil {
		return // no changes, nothing decoded: values are read from fresh
	}
	values, err := decodeValues(fresh.Data)
	if err != nil {
		values = make(map[string]string)
	}
	for _, c := range s.changes {
		if c.remove {
			delete(values, c.key)
		} else {
			values[c.key] = c.value
		}
	}
	s.values = values
}

// touchLocked records that the session was used. A conflict means another
// request just wrote it, which did the same job; other failures are
// reported but do not fail the response. A session another request
// rotated meanwhile (same handle, new key, its last-seen time just set)
// lives on: the rotating response carries the new cookie, so this one
// leaves the browser's cookie alone, as commitChangesLocked does. With no
// change to write, the request keeps its view of the old key rather than
// taking up the renewed session.
func (s *Session) touchLocked(r *http.Request) {
	rec := s.rec
	rec.Version++
	rec.LastSeen = s.m.now()
	err := s.m.store.Commit(r.Context(), rec)
	switch {
	case err == nil:
		s.rec = rec
	case errors.Is(err, ErrConflict):
	case errors.Is(err, ErrNotFound):
		renewed, err := s.renewedMeanwhileLocked(r.Context())
		if err != nil {
			s.m.cfg.OnError(r, s.storeErr("reload session", err))
		}
		if renewed {
			return
		}
		s.live, s.destroyed = false, true
	default:
		s.m.cfg.OnError(r, s.storeErr("touch session", err))
	}
}

func (m *Manager) cookie(token string, rec Record) string {
	var b strings.Builder
	b.Grow(len(m.cfg.CookieName) + len(token) + 96)
	b.WriteString(m.cfg.CookieName)
	b.WriteByte('=')
	b.WriteString(token)
	m.cookieAttributes(&b)
	if rec.Persistent {
		maxAge := int64(rec.AbsoluteDeadline.Sub(m.now()) / time.Second)
		if maxAge < 1 {
			maxAge = 1
		}
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(maxAge, 10))
	}
	return b.String()
}

func (m *Manager) expiredCookie() string {
	var b strings.Builder
	b.WriteString(m.cfg.CookieName)
	b.WriteString("=")
	m.cookieAttributes(&b)
	b.WriteString("; Max-Age=0")
	return b.String()
}

func (m *Manager) cookieAttributes(b *strings.Builder) {
	b.WriteString("; Path=/")
	if m.cfg.CookieDomain != "" {
		b.WriteString("; Domain=")
		b.WriteString(m.cfg.CookieDomain)
	}
	b.WriteString("; Secure; HttpOnly")
	if m.cfg.SameSite == http.SameSiteStrictMode {
		b.WriteString("; SameSite=Strict")
	} else {
		b.WriteString("; SameSite=Lax")
	}
}
