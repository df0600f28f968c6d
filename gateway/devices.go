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

// revocations ends sessions for the devices API, the account page and a
// password change, each timed, counted and written to the audit log.
type revocations struct{ base }

func (v *revocations) device(r *http.Request, s *cloakroom.Session, handle string) error {
	user, ref, current := s.UserID(), s.Ref(), s.Handle() == handle
	err := v.timeStore("revoke_device", func() error { return s.RevokeDevice(r.Context(), handle) })
	v.record(r, s, revokeDevice, user, ref, err, slog.String("handle", handle), slog.Bool("current", current))
	return err
}

func (v *revocations) others(r *http.Request, s *cloakroom.Session) error {
	user, ref := s.UserID(), s.Ref() // the request's token, before the rotation
	err := v.timeStore("revoke_others", func() error { return s.RevokeOthers(r.Context()) })
	v.record(r, s, revokeOthers, user, ref, err)
	return err
}

func (v *revocations) everywhere(r *http.Request, s *cloakroom.Session) error {
	user, ref := s.UserID(), s.Ref()
	err := v.timeStore("revoke_user", func() error { return s.LogoutEverywhere(r.Context()) })
	v.record(r, s, revokeAll, user, ref, err)
	return err
}

// name names (or unnames) one of the session's user's devices, so that
// two with the same browser can be told apart. It is not a revocation,
// but it changes another device's session the same way: by its handle,
// for the session's own user only.
func (v *revocations) name(r *http.Request, s *cloakroom.Session, handle, name string) error {
	if !cloakroom.ValidHandle(handle) {
		return newProblem(http.StatusBadRequest, "bad_request", "The session handle is malformed.")
	}
	err := v.timeStore("name_device", func() error { return v.sessions.NameDevice(r.Context(), s.UserID(), handle, name) })
	switch {
	case errors.Is(err, cloakroom.ErrInvalidInput):
		return newProblem(http.StatusBadRequest, "invalid_input", "A device name is at most %d printable characters.", cloakroom.MaxDeviceName)
	case errors.Is(err, cloakroom.ErrNotFound):
		return newProblem(http.StatusNotFound, "not_found", "You have no session with that handle.")
	case err != nil:
		return err
	}
	v.log.LogAttrs(r.Context(), slog.LevelInfo, "device named", slog.String("user", s.UserID()), slog.String("session", s.Ref()), slog.String("handle", handle))
	return nil
}

// record logs a revocation by the session's user; ref is the request's
// session (see [cloakroom.Session.Ref]), read before the revocation
// rotated its token.
func (v *revocations) record(r *http.Request, s *cloakroom.Session, kind, user, ref string, err error, extra ...slog.Attr) {
	v.auditRevocation(r, kind, user, err, append([]slog.Attr{slog.String("client_ip", s.ClientIP()), slog.String("session", ref)}, extra...)...)
}

// devicesAPI is the JSON API of the current session and the user's
// devices: {auth}/session and {auth}/sessions.
type devicesAPI struct {
	base
	revoke *revocations
	stepUp *stepUp
}

// info reports the current session. Polling it must not keep the session
// alive: nothing is Put, and the request is marked passive so the
// middleware does not move the idle deadline for it.
func (d *devicesAPI) info(w http.ResponseWriter, r *http.Request) {
	s := session(r)
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

// list lists the user's sessions (devices), the current one marked.
func (d *devicesAPI) list(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	devices, err := d.devices(r, s)
	if err != nil {
		d.fail(w, r, false, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"sessions": devices})
}

// revokeOne ends one of the user's sessions by handle. Ending another
// device is a step-up action (ASVS 7.5.2); ending this one never is.
func (d *devicesAPI) revokeOne(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	handle := r.PathValue("handle")
	if !cloakroom.ValidHandle(handle) {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "The session handle is malformed.")
		return
	}
	// Another device's session: a recent sign-in, and the factor the
	// account has (a password-only session must not end the sessions
	// that passed it). This one's own is a logout.
	if handle != s.Handle() && (!d.stepUp.require(w, r, s, false, "") || !d.stepUp.factorHeld(w, r, false)) {
		return
	}
	err := d.revoke.device(r, s, handle)
	switch {
	case errors.Is(err, cloakroom.ErrNotFound):
		httpjson.Error(w, http.StatusNotFound, "not_found", "You have no session with that handle.")
	case err != nil:
		d.fail(w, r, false, err)
	default:
		noContent(w)
	}
}

// revokeOthers ends every other session of the user (its route requires
// a recent sign-in). This session continues under a new token, so the
// answer carries the new CSRF token.
func (d *devicesAPI) revokeOthers(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	if err := d.revoke.others(r, s); err != nil {
		d.fail(w, r, false, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"csrf_token": s.CSRFToken()})
}

// revokeAll logs the user out everywhere, this browser included.
func (d *devicesAPI) revokeAll(w http.ResponseWriter, r *http.Request) {
	if err := d.revoke.everywhere(r, session(r)); err != nil {
		d.fail(w, r, false, err)
		return
	}
	noContent(w)
}

// name names one of the user's devices: PUT {auth}/sessions/{handle}/name
// with {"name": "Work laptop"}; an empty name unnames it.
func (d *devicesAPI) name(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	var req struct {
		Name string `json:"name"`
	}
	if p := decodeJSONBody(w, r, &req); p != nil {
		d.fail(w, r, false, p)
		return
	}
	if err := d.revoke.name(r, s, r.PathValue("handle"), req.Name); err != nil {
		d.fail(w, r, false, err)
		return
	}
	noContent(w)
}

// noContent answers 204 to a state change.
func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
