package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/signin"
)

// DefaultStepUpWindow is the default of Config.StepUpWindow.
const DefaultStepUpWindow = 5 * time.Minute

// recentAuth reports whether the session's user signed in or proved who
// they are again within the step-up window (ASVS 7.5.1, 7.5.2). An unknown
// authentication time (a provider's silent login) is never recent.
func (g *Gateway) recentAuth(s *cloakroom.Session) bool {
	return g.admission.Recent(s, g.cfg.StepUpWindow)
}

// reauthRequired answers a script's sensitive request whose session is
// valid but whose login is too old (step-up): 403 reauth_required with
// message and where to prove who the user is, under key ("reauth_url" for
// the password re-entry, "login_url" for a new login). Every step-up answers
// this way. Not 401: the user is authenticated, and a client that treats
// 401 as "logged out" must not drop a live session (see docs/endpoints.md).
func reauthRequired(w http.ResponseWriter, message, key, url string) {
	httpjson.Write(w, http.StatusForbidden, map[string]string{"error": "reauth_required", "message": message, key: url})
}

// msgStepUpInApp tells a vault user how to step up: they have no password
// here and no provider to send them to; signing in again through the app
// starts a session whose authentication time is now.
const msgStepUpInApp = "Sign in again through the app, then try again: your sign-in is too old for this."

// stepUp lets a sensitive action of s (ending another device's session)
// through when its user proved who they are within the step-up window.
// Otherwise it answers how this kind of user steps up and returns false:
// a local account re-enters its password (on an account form, the form's
// password field, checked here), a provider's user signs in again at the
// provider, a vault user signs in again through the app. returnTo is where
// a page comes back to after the provider's sign-in.
func (g *Gateway) stepUp(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, page bool, returnTo string) bool {
	if g.recentAuth(s) {
		return true
	}
	switch signin.KindOfSession(s) {
	case signin.KindLocal:
		if page {
			return g.stepUpForm(w, r, s)
		}
		passwordReauthRequired(w, g.auth)
	case signin.KindProvider:
		if !page {
			returnTo = ""
		}
		if !g.providerReauth(w, s, page, returnTo) {
			g.stepUpRefused(w, r, s, page, "Sign in again, then try again: your sign-in is too old for this.")
		}
	default:
		g.stepUpRefused(w, r, s, page, msgStepUpInApp)
	}
	return false
}

// stepUpRefused answers a step-up the gateway cannot lead the user
// through itself: the account page with the message, or 403
// reauth_required without a URL.
func (g *Gateway) stepUpRefused(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, page bool, message string) {
	if page {
		g.renderAccount(w, r, s, http.StatusForbidden, "", message)
		return
	}
	httpjson.Write(w, http.StatusForbidden, map[string]string{"error": "reauth_required", "message": message})
}

// passwordReauthRequired asks a local account's session to re-enter its
// password at POST {auth}/reauth.
func passwordReauthRequired(w http.ResponseWriter, auth string) {
	reauthRequired(w, "Enter your password again to do this.", "reauth_url", auth+"/reauth")
}

// checkPassword checks the logged-in user's password for a step-up, with
// the login's throttling. It answers the request and returns false when the
// password is not accepted.
func (g *Gateway) checkOwnPassword(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, password string, page bool) bool {
	_, err := g.accounts.Login(r.Context(), accounts.LoginAttempt{
		Name: s.UserID(), Password: password, ClientIP: g.sessions.Config().ClientIP(r), Devices: signin.DeviceTokens(r),
	})
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "reauth", slog.String("user", s.UserID()),
		slog.String("outcome", outcomeOf(err)), slog.String("session", s.Ref()))
	if err == nil {
		return true
	}
	g.answerAuthError(w, r, err, page)
	return false
}

func outcomeOf(err error) string {
	switch {
	case err == nil:
		return outcomeSuccess
	case errors.Is(err, accounts.ErrThrottled):
		return outcomeThrottled
	case errors.Is(err, accounts.ErrInvalidCredentials), errors.Is(err, accounts.ErrInvalidInput):
		return outcomeInvalid
	}
	return outcomeError
}

// answerAuthError answers a failed password check: 429 with Retry-After,
// 401, 400 for a new password that is not acceptable, or 503.
func (g *Gateway) answerAuthError(w http.ResponseWriter, r *http.Request, err error, page bool) {
	var throttled *accounts.ThrottledError
	status, code, msg := http.StatusServiceUnavailable, "unavailable", msgUnavailable
	switch {
	case errors.As(err, &throttled):
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(throttled.RetryAfter.Seconds())))))
		status, code, msg = http.StatusTooManyRequests, "throttled", msgThrottled
	case errors.Is(err, accounts.ErrInvalidCredentials):
		status, code, msg = http.StatusUnauthorized, "invalid_credentials", "The current password is wrong."
	case errors.Is(err, accounts.ErrInvalidInput):
		status, code, msg = http.StatusBadRequest, "bad_request", err.Error()
	default:
		g.log.ErrorContext(r.Context(), "password check", "err", err)
	}
	if page {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, http.StatusText(status)+": "+msg, status)
		return
	}
	httpjson.Error(w, status, code, msg)
}

// reauth is POST {auth}/reauth: {"password": "..."} re-enters the password
// so that a sensitive action (ending other sessions) is allowed for the
// next StepUpWindow. The session continues under a new token.
func (g *Gateway) reauth(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	var body struct {
		Password string `json:"password"`
	}
	if err := decodeJSONBody(w, r, &body); err != nil {
		httpjson.Error(w, err.Status, "bad_request", err.Message)
		return
	}
	if body.Password == "" || len(body.Password) > maxPasswordLen {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "Send your password.")
		return
	}
	if !g.checkOwnPassword(w, r, s, body.Password, false) {
		return
	}
	// A re-authentication gets a new token, like a login (ASVS 7.2.4).
	g.admission.MarkAuthenticated(s)
	if err := g.timeStore("renew", func() error { return s.Renew(r.Context()) }); err != nil {
		g.storeFailed(w, r, err)
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

// changePassword is POST {auth}/password (JSON) and
// POST {auth}/account/password (form): the current password is required
// (which is also the step-up), and the other sessions end if asked.
func (g *Gateway) changePassword(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, req passwordChange, page bool) (othersEnded bool, ok bool) {
	if req.Current == "" || req.New == "" || len(req.Current) > maxPasswordLen || len(req.New) > maxPasswordLen {
		g.answerAuthError(w, r, accounts.ErrInvalidInput, page)
		return false, false
	}
	err := g.accounts.ChangeOwnPassword(r.Context(), accounts.LoginAttempt{
		Name: s.UserID(), Password: req.Current, ClientIP: g.sessions.Config().ClientIP(r), Devices: signin.DeviceTokens(r),
	}, req.New)
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "password change", slog.String("user", s.UserID()),
		slog.String("outcome", outcomeOf(err)), slog.String("session", s.Ref()),
		slog.Bool("end_other_sessions", req.EndOtherSessions))
	if err != nil {
		g.answerAuthError(w, r, err, page)
		return false, false
	}
	g.admission.MarkAuthenticated(s)
	if req.EndOtherSessions {
		if err := g.revokeOthers(r, s); err != nil {
			if page {
				g.pageFailed(w, r, err)
			} else {
				g.storeFailed(w, r, err)
			}
			return false, false
		}
		return true, true
	}
	// The current password was just proven: a new token, as for a login.
	if err := g.timeStore("renew", func() error { return s.Renew(r.Context()) }); err != nil {
		if page {
			g.pageFailed(w, r, err)
		} else {
			g.storeFailed(w, r, err)
		}
		return false, false
	}
	return false, true
}

func (g *Gateway) passwordJSON(w http.ResponseWriter, r *http.Request) {
	s, ok := g.apiSession(w, r)
	if !ok {
		return
	}
	var req passwordChange
	if err := decodeJSONBody(w, r, &req); err != nil {
		httpjson.Error(w, err.Status, "bad_request", err.Message)
		return
	}
	ended, ok := g.changePassword(w, r, s, req, false)
	if !ok {
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"other_sessions_ended": ended, "csrf_token": s.CSRFToken()})
}

func (g *Gateway) accountPassword(w http.ResponseWriter, r *http.Request) {
	s, ok := g.accountForm(w, r)
	if !ok {
		return
	}
	req := passwordChange{
		Current: r.PostForm.Get("current_password"), New: r.PostForm.Get("new_password"),
		EndOtherSessions: r.PostForm.Get("end_others") == "on",
	}
	ended, ok := g.changePassword(w, r, s, req, true)
	if !ok {
		return
	}
	if ended {
		seeOther(w, g.auth+"/account?done=password-others")
		return
	}
	seeOther(w, g.auth+"/account?done=password")
}

// decodeJSONBody reads a small JSON object body into v, strictly.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) *inputError {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return badInput(http.StatusUnsupportedMediaType, "Send application/json.")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonBodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badInput(http.StatusBadRequest, "The body must hold a single JSON object.")
	}
	return nil
}
