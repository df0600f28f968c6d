package gateway

import (
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strconv"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/signin"
)

// passwords checks and changes a local account's own password: the
// step-up re-entry, and the password change of the JSON API and the
// account page.
type passwords struct {
	base
	admission *signin.Admission
	accounts  *accounts.Service
	revoke    *revocations
}

// authProblem is the answer to a failed password check: 429 with
// Retry-After (set on h), 401, 400 for a new password that is not
// acceptable, 503 "busy" with Retry-After when no hashing slot freed up,
// or 503.
func authProblem(h http.Header, err error) *problem {
	var throttled *accounts.ThrottledError
	switch {
	case errors.Is(err, accounts.ErrBusy):
		h.Set("Retry-After", "1")
		return &problem{Status: http.StatusServiceUnavailable, Code: "busy", Message: msgBusy}
	case errors.As(err, &throttled):
		h.Set("Retry-After", strconv.Itoa(retryAfter(throttled.RetryAfter)))
		return &problem{Status: http.StatusTooManyRequests, Code: "throttled", Message: throttledMessage(throttled.RetryAfter)}
	case errors.Is(err, accounts.ErrInvalidCredentials):
		return &problem{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: "The current password is wrong."}
	case errors.Is(err, accounts.ErrInvalidInput):
		return &problem{Status: http.StatusBadRequest, Code: "bad_request", Message: err.Error()}
	}
	return &problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msgUnavailable}
}

func outcomeOf(err error) string {
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.Is(err, accounts.ErrBusy):
		return outcomeBusy
	case errors.Is(err, accounts.ErrThrottled):
		return outcomeThrottled
	case errors.Is(err, accounts.ErrInvalidCredentials):
		return outcomeInvalid
	case errors.Is(err, accounts.ErrWeakPassword):
		return outcomeWeakPassword
	case errors.Is(err, accounts.ErrInvalidInput):
		return outcomeInvalidInput
	}
	return outcomeError
}

// check checks the logged-in user's password for a step-up, with the
// login's throttling. It answers the request and returns false when the
// password is not accepted.
func (p *passwords) check(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, password string, page bool) bool {
	// The session passed every factor at its sign-in: the step-up asks
	// for the password again, not for a second code.
	_, err := p.accounts.Login(r.Context(), accounts.LoginAttempt{
		Name: s.UserID(), Password: password, ClientIP: s.ClientIP(), Devices: signin.DeviceTokens(r),
		Reauthentication: true,
	})
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "reauth", slog.String("user", s.UserID()),
		slog.String("outcome", outcomeOf(err)), slog.String("session", s.Ref()))
	if err == nil {
		return true
	}
	p.failAuth(w, r, page, err)
	return false
}

// failAuth answers a failed password check (see authProblem).
func (p *passwords) failAuth(w http.ResponseWriter, r *http.Request, page bool, err error) {
	prob := authProblem(w.Header(), err)
	if prob.Status == http.StatusServiceUnavailable {
		p.log.ErrorContext(r.Context(), "password check", "err", err)
	}
	p.fail(w, r, page, prob)
}

// stepUpForm lets an account form of a local account that ends other
// sessions through when its password field is right (ASVS 7.5.2). It
// answers the request and returns false otherwise.
func (p *passwords) stepUpForm(w http.ResponseWriter, r *http.Request, s *cloakroom.Session) bool {
	password := r.PostForm.Get("password")
	if password == "" || len(password) > maxPasswordLen {
		switch pageFormOf(r) {
		case formRevoke:
			p.fail(w, r, true, errNotRecentDevice)
		case formTOTP:
			p.fail(w, r, true, errNotRecentTOTP)
		case formPasskey:
			p.fail(w, r, true, errNotRecentPasskey)
		default:
			p.fail(w, r, true, errNotRecent)
		}
		return false
	}
	if !p.check(w, r, s, password, true) {
		return false
	}
	p.admission.MarkAuthenticated(s)
	return true
}

// reauth is POST {auth}/reauth: {"password": "..."} re-enters the password
// so that a sensitive action (ending other sessions) is allowed for the
// next step-up window. The session continues under a new token.
func (p *passwords) reauth(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	var body struct {
		Password string `json:"password"`
	}
	if err := decodeJSONBody(w, r, &body); err != nil {
		p.fail(w, r, false, err)
		return
	}
	if body.Password == "" || len(body.Password) > maxPasswordLen {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "Send your password.")
		return
	}
	if !p.check(w, r, s, body.Password, false) {
		return
	}
	// A re-authentication gets a new token, like a login (ASVS 7.2.4).
	p.admission.MarkAuthenticated(s)
	if err := p.timeStore("renew", func() error { return s.Renew(r.Context()) }); err != nil {
		p.fail(w, r, false, err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"csrf_token": s.CSRFToken()})
}

// passwordChange is one request to change one's password.
type passwordChange struct {
	Current          string `json:"current_password"`
	New              string `json:"new_password"`
	EndOtherSessions bool   `json:"end_other_sessions"`
}

// change changes the session user's password: the current one is required
// (which is also the step-up), and the other sessions end if asked; this
// session continues under a new token either way. It answers failures
// itself and reports ok false then.
func (p *passwords) change(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, req passwordChange, page bool) (othersEnded bool, ok bool) {
	if req.Current == "" || req.New == "" || len(req.Current) > maxPasswordLen || len(req.New) > maxPasswordLen {
		p.failAuth(w, r, page, accounts.ErrInvalidInput)
		return false, false
	}
	res, err := p.accounts.ChangeOwnPassword(r.Context(), accounts.LoginAttempt{
		Name: s.UserID(), Password: req.Current, ClientIP: s.ClientIP(), Devices: signin.DeviceTokens(r),
	}, req.New)
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "password change", slog.String("user", s.UserID()),
		slog.String("outcome", outcomeOf(err)), slog.String("session", s.Ref()),
		slog.Bool("end_other_sessions", req.EndOtherSessions))
	if err != nil {
		p.failAuth(w, r, page, err)
		return false, false
	}
	// The change ended the account's device tokens; this browser keeps a
	// new one, so the change does not lock its user out.
	signin.SetDeviceTokens(w.Header(), res.Devices)
	p.admission.MarkAuthenticated(s)
	if req.EndOtherSessions {
		err = p.revoke.others(r, s)
	} else {
		// The current password was just proven: a new token, as for a
		// login.
		err = p.timeStore("renew", func() error { return s.Renew(r.Context()) })
	}
	if err != nil {
		p.fail(w, r, page, err)
		return false, false
	}
	return req.EndOtherSessions, true
}

// changeJSON is POST {auth}/password.
func (p *passwords) changeJSON(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	var req passwordChange
	if err := decodeJSONBody(w, r, &req); err != nil {
		p.fail(w, r, false, err)
		return
	}
	ended, ok := p.change(w, r, s, req, false)
	if !ok {
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"other_sessions_ended": ended, "csrf_token": s.CSRFToken()})
}

// changeForm is POST {auth}/account/password.
func (p *passwords) changeForm(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	req := passwordChange{
		Current: r.PostForm.Get("current_password"), New: r.PostForm.Get("new_password"),
		EndOtherSessions: r.PostForm.Get("end_others") == "on",
	}
	ended, ok := p.change(w, r, s, req, true)
	switch {
	case !ok:
	case ended:
		seeOther(w, p.auth+"/account?done=password-others")
	default:
		seeOther(w, p.auth+"/account?done=password")
	}
}

// decodeJSONBody reads a small JSON object body into v, strictly.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) *problem {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return newProblem(http.StatusUnsupportedMediaType, "bad_request", "Send application/json.")
	}
	return decodeJSONObject(http.MaxBytesReader(w, r.Body, maxLoginBody), v)
}
