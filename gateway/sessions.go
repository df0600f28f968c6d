package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/signin"
)

// maxHandleLen bounds a session handle taken from a URL or form; the core
// issues 22-character base64url handles.
const maxHandleLen = 64

// validHandle reports whether h looks like a session handle: 1 to 64
// base64url characters.
func validHandle(h string) bool {
	if h == "" || len(h) > maxHandleLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// apiSession returns the logged-in session of a JSON endpoint, or answers
// 503 (store failure) or 401 JSON.
func (g *Gateway) apiSession(w http.ResponseWriter, r *http.Request) (*cloakroom.Session, bool) {
	s := g.sessions.Session(r)
	if s.Err() != nil {
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The session store cannot be reached. Try again shortly.")
		return nil, false
	}
	if !s.LoggedIn() {
		httpjson.Write(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthenticated", "message": "Log in first.", "login_url": g.auth + "/login",
		})
		return nil, false
	}
	return s, true
}

// sessionInfo reports the current session. Polling it must not keep the
// session alive: nothing is Put, and the request is marked passive so the
// middleware does not move the idle deadline for it.
func (g *Gateway) sessionInfo(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	s.MarkPassive()
	created, idle, absolute := s.Times()
	httpjson.Write(w, http.StatusOK, struct {
		User              string    `json:"user"`
		Email             string    `json:"email"`
		Roles             []string  `json:"roles"`
		CSRFToken         string    `json:"csrf_token"`
		CreatedAt         time.Time `json:"created_at"`
		IdleExpiresAt     time.Time `json:"idle_expires_at"`
		AbsoluteExpiresAt time.Time `json:"absolute_expires_at"`
	}{s.UserID(), signin.Email(s), signin.Roles(s), s.CSRFToken(), created.UTC(), idle.UTC(), absolute.UTC()})
}

// listSessions lists the user's sessions (devices), the current one marked.
func (g *Gateway) listSessions(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	var devices []cloakroom.Device
	err := g.timeStore("list", func() (err error) {
		devices, err = s.Devices(r.Context())
		return err
	})
	if err != nil {
		g.storeFailed(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"sessions": devices})
}

// revokeSession ends one of the user's sessions by handle.
func (g *Gateway) revokeSession(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	if !g.checkCSRF(r, s, false) {
		g.forbidden(w, r, false)
		return
	}
	handle := r.PathValue("handle")
	if !validHandle(handle) {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "The session handle is malformed.")
		return
	}
	// Ending another device is a step-up action (ASVS 7.5.2).
	if handle != s.Handle() && !g.stepUp(w, r, s, false, "") {
		return
	}
	err := g.revokeDevice(r, s, handle)
	switch {
	case errors.Is(err, cloakroom.ErrNotFound):
		httpjson.Error(w, http.StatusNotFound, "not_found", "You have no session with that handle.")
	case err != nil:
		g.storeFailed(w, r, err)
	default:
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	}
}

// revokeOtherSessions ends every other session of the user. This session
// continues under a new token, so the answer carries the new CSRF token.
func (g *Gateway) revokeOtherSessions(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	if !g.checkCSRF(r, s, false) {
		g.forbidden(w, r, false)
		return
	}
	if !g.stepUp(w, r, s, false, "") {
		return
	}
	if err := g.revokeOthers(r, s); err != nil {
		g.storeFailed(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"csrf_token": s.CSRFToken()})
}

// revokeAllSessions logs the user out everywhere, this browser included.
func (g *Gateway) revokeAllSessions(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	if !g.checkCSRF(r, s, false) {
		g.forbidden(w, r, false)
		return
	}
	if err := g.revokeEverywhere(r, s); err != nil {
		g.storeFailed(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// The three revocations shared by the JSON API and the account page. Each
// is timed, counted and audit-logged.

func (g *Gateway) revokeDevice(r *http.Request, s *cloakroom.Session, handle string) error {
	user, ref, current := s.UserID(), s.Ref(), s.Handle() == handle
	err := g.timeStore("revoke_device", func() error { return s.RevokeDevice(r.Context(), handle) })
	g.auditRevocation(r, revokeDevice, user, ref, err, slog.String("handle", handle), slog.Bool("current", current))
	return err
}

func (g *Gateway) revokeOthers(r *http.Request, s *cloakroom.Session) error {
	user, ref := s.UserID(), s.Ref() // the request's token, before the rotation
	err := g.timeStore("revoke_others", func() error { return s.RevokeOthers(r.Context()) })
	g.auditRevocation(r, revokeOthers, user, ref, err)
	return err
}

func (g *Gateway) revokeEverywhere(r *http.Request, s *cloakroom.Session) error {
	user, ref := s.UserID(), s.Ref()
	err := g.timeStore("revoke_user", func() error { return s.LogoutEverywhere(r.Context()) })
	g.auditRevocation(r, revokeAll, user, ref, err)
	return err
}

// auditRevocation logs a revocation; ref is the request's session (see
// [cloakroom.Session.Ref]), read before the revocation rotated its token.
func (g *Gateway) auditRevocation(r *http.Request, kind, user, ref string, err error, extra ...slog.Attr) {
	outcome := "success"
	if err != nil {
		outcome = "error"
	} else {
		g.metrics.revocations.WithLabelValues(kind).Inc()
	}
	attrs := append([]slog.Attr{
		slog.String("kind", kind), slog.String("outcome", outcome), slog.String("user", user),
		slog.String("client_ip", g.sessions.Config().ClientIP(r)), slog.String("session", ref),
	}, extra...)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "revocation", attrs...)
}

// storeFailed answers a failed session operation: 503 for store failures,
// 409 when another request of the session renewed it meanwhile, 401 when
// the session ended meanwhile, 500 otherwise.
func (g *Gateway) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, cloakroom.ErrStoreUnavailable):
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The session store cannot be reached. Try again shortly.")
	case errors.Is(err, cloakroom.ErrRotatedMeanwhile):
		// Another request of this session did it first (a double click,
		// another tab); its response carried the new cookie.
		httpjson.Error(w, http.StatusConflict, "conflict", "Another request just did this. Reload the page.")
	case errors.Is(err, cloakroom.ErrNotLoggedIn), errors.Is(err, cloakroom.ErrNotFound):
		httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "The session has ended.")
	default:
		g.log.ErrorContext(r.Context(), "session operation failed", "path", r.URL.Path, "err", err)
		httpjson.Error(w, http.StatusInternalServerError, "internal", "Something went wrong.")
	}
}
