package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/signin"
)

// signInPages is the way in of local accounts and the way out of every
// session: the login page and form (JSON too), and logout.
type signInPages struct {
	base
	admission *signin.Admission
	accounts  *accounts.Service
	oidc      *oidcbff.Client // nil without OpenID providers
	// passkeyLimit bounds the passkey sign-in's anonymous endpoints; nil
	// with passkeys off.
	passkeyLimit *anonymousLimit
}

// providerLinks returns the "Sign in with ..." buttons of the login page.
func (p *signInPages) providerLinks(returnTo string) []oidcbff.ProviderLink {
	if p.oidc == nil {
		return nil
	}
	return p.oidc.Links(returnTo)
}

// signedOutNotices are the login page's messages for its ended= hint (see
// endedSession): fixed texts, so nothing from the URL reaches the page.
var signedOutNotices = map[string]string{
	endedLogout:     "You signed out. Sign in again to continue.",
	endedEverywhere: "You signed out on all your devices, this one included. Sign in again to continue.",
	endedSession:    "You were signed out: your session expired, or this device was signed out from another device or by an administrator. Sign in again to continue.",
	endedDevice:     "This session is bound to the browser that signed in, and this request came without the short-lived proof that browser keeps renewing. If this is that browser, reload the page; otherwise sign in here.",
}

// loginPage serves the login form, saying why the user was signed out
// when the link that led here says (ended=).
func (p *signInPages) loginPage(w http.ResponseWriter, r *http.Request) {
	s := p.sessions.Session(r)
	q := r.URL.Query()
	data := pageData{Title: "Sign in", ReturnTo: httpx.SafeReturnTo(q.Get("return_to"))}
	if !s.LoggedIn() {
		data.Notice = signedOutNotices[q.Get("ended")]
	}
	data.Providers = p.providerLinks(data.ReturnTo)
	if s.LoggedIn() {
		data.User, data.CSRFToken = s.UserID(), s.CSRFToken()
	}
	p.render(w, r, http.StatusOK, "login", data)
}

// errorPage renders a message from the OpenID client (a refused or failed
// sign-in) as the login page with an error and the provider buttons, so a
// refused user sees why and is never redirected in a loop.
func (p *signInPages) errorPage(w http.ResponseWriter, r *http.Request, status int, message string) {
	p.render(w, r, status, "login", pageData{Title: "Sign in", Error: message, ReturnTo: "/", Providers: p.providerLinks("/")})
}

// login checks a username and password and admits the account's session.
func (p *signInPages) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req, isJSON, err := readLogin(w, r)
	s := p.sessions.Session(r)
	a := loginAttempt{p: p, w: w, r: r, s: s, req: req, isJSON: isJSON}
	var bad *problem
	if errors.As(err, &bad) {
		a.fail(bad.Status, bad.Code, bad.Message)
		a.audit(outcomeBadRequest, slog.String("reason", bad.Message))
		return
	}
	if s.Err() != nil {
		// Checked first so that an outage does not count against the
		// user's attempts.
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session store unavailable"))
		return
	}
	res, pin, err := p.authenticate(ctx, accounts.LoginAttempt{
		Name: req.Username, Password: req.Password, ClientIP: s.ClientIP(), Devices: signin.DeviceTokens(r),
	})
	var second *accounts.SecondFactorRequiredError
	if errors.As(err, &second) {
		p.startPending(&a, second)
		return
	}
	if err != nil {
		a.refused(err)
		return
	}
	user := res.User
	id := signin.Identity{
		UserID: signin.LocalUser(user.Name), Method: signin.Password, AMR: []string{signin.AMRPassword},
		AuthTime: p.now(), Email: user.Email, Roles: user.Roles,
		Pin: pin, Persistent: req.Remember, DeviceTokens: res.Devices,
	}
	if p.admission.NeedsSecondFactor(id) {
		// A role that requires a second factor, and none yet: the
		// password only opens the enrolment.
		p.startEnrolment(&a, user)
		return
	}
	err = p.timeStore("login", func() error { return p.admission.Admit(ctx, r, w.Header(), id) })
	if err != nil {
		a.refused(err)
		return
	}
	a.userName = user.Name
	if isJSON {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"user": user.Name, "email": user.Email, "roles": signin.Roles(s), "csrf_token": s.CSRFToken(),
		})
	} else {
		seeOther(w, httpx.SafeReturnTo(req.ReturnTo))
	}
	a.audit(outcomeSuccess, slog.Bool("remember", req.Remember))
}

// loginAttempt answers and audits one POST {auth}/login.
type loginAttempt struct {
	p        *signInPages
	w        http.ResponseWriter
	r        *http.Request
	s        *cloakroom.Session
	req      loginRequest
	isJSON   bool
	userName string // set once the account logged in
}

// audit logs the attempt. The name typed is logged only once it names the
// account that logged in; otherwise it may be a mistyped password, and a
// keyed hash prefix lets the operator correlate attempts without it.
func (a *loginAttempt) audit(outcome string, extra ...slog.Attr) {
	a.p.metrics.logins.WithLabelValues(outcome).Inc()
	who := slog.String("user_ref", a.p.accounts.NameRef(a.r.Context(), a.req.Username))
	if outcome == outcomeSuccess {
		who = slog.String("user", a.userName)
	}
	attrs := append([]slog.Attr{
		slog.String("outcome", outcome), who,
		slog.String("client_ip", a.s.ClientIP()), slog.String("session", a.s.Ref()), // the new session's after a login
	}, extra...)
	a.p.log.LogAttrs(a.r.Context(), slog.LevelInfo, "login", attrs...)
}

// fail answers the attempt: JSON, or the login page with the message.
func (a *loginAttempt) fail(status int, code, message string) {
	if a.isJSON {
		httpjson.Error(a.w, status, code, message)
		return
	}
	returnTo := httpx.SafeReturnTo(a.req.ReturnTo)
	a.p.render(a.w, a.r, status, "login", pageData{
		Title: "Sign in", Error: message, Username: a.req.Username,
		ReturnTo: returnTo, Remember: a.req.Remember, Providers: a.p.providerLinks(returnTo),
	})
}

// refused answers a login the credentials check or the admission refused.
// Every refusal for a reason about the account reads the same to the
// client, so that it reveals nothing about which accounts exist; the log
// tells them apart.
func (a *loginAttempt) refused(err error) {
	var throttled *accounts.ThrottledError
	switch {
	case errors.Is(err, errAccountChanged), errors.Is(err, signin.ErrChangedMeanwhile):
		// The account changed (disabled, password or roles) after the pin:
		// what was checked is stale, and nothing was created.
		a.fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		a.audit(outcomeInvalid, slog.String("reason", "account changed during login"))
	case errors.Is(err, accounts.ErrBusy):
		// Overload, not the user's doing: nothing was counted, retry soon.
		a.w.Header().Set("Retry-After", "1")
		a.fail(http.StatusServiceUnavailable, "busy", msgBusy)
		a.audit(outcomeBusy)
	case errors.As(err, &throttled) || errors.Is(err, accounts.ErrThrottled):
		var wait time.Duration
		if throttled != nil {
			wait = throttled.RetryAfter
		}
		secs := retryAfter(wait)
		a.w.Header().Set("Retry-After", strconv.Itoa(secs))
		a.fail(http.StatusTooManyRequests, "throttled", throttledMessage(wait))
		a.audit(outcomeThrottled, slog.Int("retry_after", secs))
	case errors.Is(err, accounts.ErrInvalidCredentials):
		a.fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		a.audit(outcomeInvalid)
	case errors.Is(err, accounts.ErrInvalidInput):
		a.fail(http.StatusUnauthorized, "invalid_credentials", msgInvalidCredentials)
		a.audit(outcomeInvalid, slog.String("reason", err.Error()))
	case errors.Is(err, signin.ErrInvalidIdentity), errors.Is(err, signin.ErrUnavailable):
		a.p.log.ErrorContext(a.r.Context(), "start session", "user", a.req.Username, "err", err)
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "session not created"))
	default:
		a.p.log.ErrorContext(a.r.Context(), "authenticate", "err", err)
		a.fail(http.StatusServiceUnavailable, "unavailable", msgUnavailable)
		a.audit(outcomeError, slog.String("reason", "accounts unavailable"))
	}
}

// msgBusy answers an attempt refused because every password-hashing slot
// stayed taken.
const msgBusy = "The server is busy. Try again in a moment."

// errAccountChanged reports that the account changed while its password
// was being checked.
var errAccountChanged = errors.New("gateway: the account changed during the login")

// authenticate checks a login with the user's session generation pinned
// before the account record is read. Every account change (disable,
// delete, password, roles) updates the record and then bumps the
// generation, so a change that lands while the password is being hashed
// makes the pinned admission fail instead of starting a session with the
// record read before it.
func (p *signInPages) authenticate(ctx context.Context, a accounts.LoginAttempt) (accounts.LoginResult, cloakroom.Pin, error) {
	pin, err := p.sessions.Pin(ctx, a.Name)
	if err != nil {
		return accounts.LoginResult{}, pin, err
	}
	res, err := p.accounts.Login(ctx, a)
	if err != nil || res.User.Name == a.Name {
		return res, pin, err
	}
	// The name was typed in another case than the stored one, the user
	// ID: pin that, then check that the record is still the one the
	// password was checked against.
	user := res.User
	if pin, err = p.sessions.Pin(ctx, user.Name); err != nil {
		return accounts.LoginResult{}, pin, err
	}
	now, err := p.accounts.Get(ctx, user.Name)
	switch {
	case errors.Is(err, accounts.ErrNoSuchUser):
		return accounts.LoginResult{}, pin, errAccountChanged
	case err != nil:
		return accounts.LoginResult{}, pin, err
	case now.Disabled || !now.PasswordChangedAt.Equal(user.PasswordChangedAt) ||
		now.Email != user.Email || !slices.Equal(now.Roles, user.Roles):
		return accounts.LoginResult{}, pin, errAccountChanged
	}
	return res, pin, nil
}

// logout ends the session: deleted in the store, its cookie expired (by
// the session middleware), and for a session from an OpenID provider its
// tokens deleted and the browser sent on to the provider's logout.
func (p *signInPages) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := p.sessions.Session(r)
	form := isFormContent(r)
	user, ref := s.UserID(), s.Ref()
	loadErr := s.Err()
	// Before the logout: the provider's tokens go with the session.
	endSession := ""
	if p.oidc != nil && s.LoggedIn() {
		endSession = p.oidc.EndSession(ctx, s, form)
	}
	err := p.timeStore("logout", func() error { return s.Logout(ctx) })
	outcome := "success"
	if loadErr != nil || err != nil {
		outcome = "error"
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "logout",
		slog.String("outcome", outcome), slog.String("user", user),
		slog.String("client_ip", s.ClientIP()), slog.String("session", ref))
	switch {
	case outcome != "success":
		// The cookie is expired anyway; the server-side session may live
		// on until it times out, and the client should know.
		msg := "The session could not be ended on the server; the cookie was cleared. Try again shortly."
		if form {
			msg = "you are logged out of this browser, but the session could not be ended on the server. Try again shortly."
		}
		p.fail(w, r, form, &problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msg})
	case endSession != "" && form:
		// A top-level navigation: the provider's end-session URL, with
		// id_token_hint, goes only in this redirect.
		h := w.Header()
		h.Set("Location", endSession)
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(http.StatusSeeOther)
	case endSession != "":
		httpjson.Write(w, http.StatusOK, map[string]string{"logout_url": endSession})
	case form:
		seeOther(w, p.loginURL("", endedLogout))
	default:
		noContent(w)
	}
}
