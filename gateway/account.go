package gateway

import (
	"errors"
	"net/http"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/signin"
)

// notices maps the account page's done= parameter to fixed messages, so
// nothing from the URL is ever reflected into the page.
var notices = map[string]string{
	"revoked":         "The session was revoked: that device is logged out.",
	"others":          "All your other devices are logged out.",
	"password":        "Your password was changed.",
	"password-others": "Your password was changed, and all your other devices are logged out.",
	"named":           "The device's name was saved.",
}

// totpNotices maps the account page's totp= parameter to fixed messages.
var totpNotices = map[string]string{
	"expired": "The authenticator app set-up expired or was already finished. Start again if your account does not show it as on.",
}

// stepUpErrors maps the account page's stepup= parameter (a step-up the
// gateway could not lead the user through) to fixed messages.
var stepUpErrors = map[string]string{
	"app": msgStepUpInApp,
	"":    "Sign in again, then try again: your sign-in is too old for this.",
}

// accountPages is the server-rendered account page: the user's devices
// with buttons to end them, and the password change of a local account.
type accountPages struct {
	base
	revoke   *revocations
	stepUp   *stepUp
	totp     *totpEnrolment
	passkeys *passkeyPages
}

// page lists the user's sessions with buttons to end them.
func (a *accountPages) page(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	q := r.URL.Query()
	errMsg := ""
	if q.Has("stepup") {
		errMsg = stepUpErrors[q.Get("stepup")]
	}
	data, err := a.data(r, s)
	if err != nil {
		a.fail(w, r, true, err)
		return
	}
	status := http.StatusOK
	if errMsg != "" {
		status = http.StatusForbidden
	}
	data.Notice, data.Error = notices[q.Get("done")], errMsg
	if n, ok := totpNotices[q.Get("totp")]; ok {
		data.Notice = n
	}
	if n, ok := passkeyNotices[q.Get("passkey")]; ok {
		data.Notice = n
	}
	a.render(w, r, status, "account", data)
}

// formFailed re-renders the account page after one of its forms was
// refused, with the problem next to that form and the problem's status.
// It reports false when the page cannot be built (the store is down).
func (a *accountPages) formFailed(w http.ResponseWriter, r *http.Request, form string, p *problem) bool {
	s := session(r)
	data, err := a.data(r, s)
	if err != nil {
		return false
	}
	msg := sentence(p.Message)
	if p.Code == errFormExpired.Code {
		// The page is rendered afresh, with a new token in every form.
		msg = "This form had expired, so nothing was done. The page is up to date now: try again."
	}
	data.FormError = formError{Form: form, Message: msg}
	if form == formRevoke || form == formName {
		// Shown in the row of the device the form was about, when the
		// handle is one of the user's devices (never reflected otherwise).
		handle := r.PostForm.Get("handle")
		for _, d := range data.Devices {
			if d.Handle == handle {
				data.FormError.Handle = handle
			}
		}
		if data.FormError.Handle == "" {
			data.FormError.Form = formRevokeOthers // the list's general place
		}
	}
	a.render(w, r, p.Status, "account", data)
	return true
}

// The account page's forms, as named by the routes (withPageForm) and the
// template's ErrorFor calls.
const (
	formRevoke       = "revoke"
	formRevokeOthers = "revoke-others"
	formRevokeAll    = "revoke-all"
	formPassword     = "password"
	formName         = "name"
	// formTOTP, "totp", is declared with the enrolment (totp.go),
	// formPasskey, "passkey", with the passkeys (passkeys.go).
)

// data is what the account page shows about s and its user's devices.
func (a *accountPages) data(r *http.Request, s *cloakroom.Session) (pageData, error) {
	devices, err := a.devices(r, s)
	if err != nil {
		return pageData{}, err
	}
	created, _, absolute := s.Times()
	kind := signin.KindOfSession(s)
	data := pageData{
		Title: "Your account", User: s.UserID(), CSRFToken: s.CSRFToken(),
		Email: signin.Email(s), Roles: signin.Roles(s),
		Created: formatTime(created), AbsoluteExpiry: formatTime(absolute),
		IdleTimeout:  formatDuration(a.sessions.Config().IdleTimeout),
		LocalAccount: kind == signin.KindLocal,
		// Only a local account has a password to ask for; the others
		// step up by signing in again, at the provider or in the app.
		StepUp:     kind == signin.KindLocal && !a.stepUp.recent(s),
		StepUpHint: a.stepUp.hint(s),
	}
	if data.LocalAccount {
		data.TOTP, data.TOTPSince, data.RecoveryCodesLeft, data.TOTPAvailable = a.totp.info(r, s)
		if a.passkeys.accounts.PasskeysEnabled() {
			data.PasskeyList = a.passkeys.list(r, s)
		}
	}
	now := a.now()
	for _, d := range devices {
		data.Devices = append(data.Devices, deviceRow{
			Handle: d.Handle, Name: d.Name, Label: d.Label, IP: d.IP,
			Created: formatTime(d.CreatedAt), LastSeen: formatAgo(now, d.LastSeen), LastSeenAt: formatTime(d.LastSeen),
			Current: d.Current, Persistent: d.Persistent, Bound: d.Bound,
		})
	}
	return data, nil
}

// name names one of the user's devices from the account page.
func (a *accountPages) name(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	if err := a.revoke.name(r, s, r.PostForm.Get("handle"), r.PostForm.Get("name")); err != nil {
		a.fail(w, r, true, err)
		return
	}
	seeOther(w, a.auth+"/account?done=named")
}

// revokeOne ends one device's session from the account page.
func (a *accountPages) revokeOne(w http.ResponseWriter, r *http.Request) {
	s := session(r)
	handle := r.PostForm.Get("handle") // parsed by the route's formCSRF
	if !cloakroom.ValidHandle(handle) {
		a.fail(w, r, true, badInput(http.StatusBadRequest, "the session handle is malformed."))
		return
	}
	current := s.Handle() == handle
	if !current && (!a.stepUp.require(w, r, s, true, a.auth+"/account") || !a.stepUp.factorHeld(w, r, true)) {
		return
	}
	err := a.revoke.device(r, s, handle)
	switch {
	case errors.Is(err, cloakroom.ErrNotFound):
		// Already gone (revoked elsewhere, or expired): the list is what
		// the user wanted anyway.
		seeOther(w, a.auth+"/account?done=revoked")
	case err != nil:
		a.fail(w, r, true, err)
	case current:
		seeOther(w, a.loginURL("", endedLogout))
	default:
		seeOther(w, a.auth+"/account?done=revoked")
	}
}

// revokeOthers ends every other device's session from the account page
// (its route requires a recent sign-in).
func (a *accountPages) revokeOthers(w http.ResponseWriter, r *http.Request) {
	if err := a.revoke.others(r, session(r)); err != nil {
		a.fail(w, r, true, err)
		return
	}
	seeOther(w, a.auth+"/account?done=others")
}

// revokeAll logs out everywhere from the account page.
func (a *accountPages) revokeAll(w http.ResponseWriter, r *http.Request) {
	if err := a.revoke.everywhere(r, session(r)); err != nil {
		a.fail(w, r, true, err)
		return
	}
	seeOther(w, a.loginURL("", endedEverywhere))
}
