package gateway

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/signin"
)

// DefaultStepUpWindow is the default of Config.StepUpWindow.
const DefaultStepUpWindow = 5 * time.Minute

// msgStepUpInApp tells a vault user how to step up: they have no password
// here and no provider to send them to; signing in again through the app
// starts a session whose authentication time is now.
const msgStepUpInApp = "Sign in again through the app, then try again: your sign-in is too old for this."

// stepUp decides whether a session's sign-in is recent enough for a
// sensitive action (ending another device's session, a step-up route), and
// tells each kind of user how to prove who they are again.
type stepUp struct {
	base
	admission *signin.Admission
	window    time.Duration
	oidc      *oidcbff.Client // nil without OpenID providers
	passwords *passwords
	accounts  *accounts.Service
	// factorRoutes are Config.FactorRoutes.
	factorRoutes []string
}

// recent reports whether the session's user signed in or proved who they
// are again within the step-up window (ASVS 7.5.1, 7.5.2). An unknown
// authentication time (a provider's silent login) is never recent.
func (u *stepUp) recent(s *cloakroom.Session) bool {
	return u.admission.Recent(s, u.window)
}

// require lets a sensitive action of s through when its user proved who
// they are within the step-up window. Otherwise it answers how this kind
// of user steps up and returns false: a local account re-enters its
// password (on an account form, the form's password field, checked here),
// a provider's user signs in again at the provider, a vault user signs in
// again through the app. returnTo is where a page comes back to after the
// provider's sign-in.
func (u *stepUp) require(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, page bool, returnTo string) bool {
	if u.recent(s) {
		return true
	}
	switch signin.KindOfSession(s) {
	case signin.KindLocal:
		if page {
			return u.passwords.stepUpForm(w, r, s)
		}
		reauthRequired(w, "Enter your password again to do this.", "reauth_url", u.auth+"/reauth")
	case signin.KindProvider:
		if login := u.providerURL(s, returnTo); login != "" {
			if page {
				seeOther(w, login)
			} else {
				reauthRequired(w, "Sign in again at your identity provider to do this.", "login_url", login)
			}
			return false
		}
		u.refuse(w, page, "Sign in again, then try again: your sign-in is too old for this.", "")
	default:
		u.refuse(w, page, msgStepUpInApp, "app")
	}
	return false
}

// requireRecent is the route wrapper of an action that always needs a
// recent sign-in (see require): page says how to answer, returnTo where
// a provider's sign-in comes back to.
func (u *stepUp) requireRecent(page bool, returnTo string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if u.require(w, r, session(r), page, returnTo) {
			next(w, r)
		}
	}
}

// errFactorRequired answers an action that needs the second factor from
// a session signed in without it.
var errFactorRequired = &problem{Status: http.StatusForbidden, Code: "second_factor_required",
	Message: "Sign out, then sign in again with your second factor (the code from your authenticator app, or your passkey) to do this: this session was started with the password alone."}

// requireFactor is the route wrapper of an action that a local account
// with a second factor (an app or a passkey) may take only from a session
// signed in with one (amr otp, hwk, swk or mfa): a session from before the enrolment, or a password-only one,
// cannot end the sessions that passed the factor, nor add or remove a
// factor (swap the user's for its own). The password step-up
// does not replace the factor here. Provider and vault users, whose
// factors are not ours to know, and local accounts without a factor pass.
// When the account store cannot tell, the action is refused.
func (u *stepUp) requireFactor(page bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if u.factorHeld(w, r, page) {
			next(w, r)
		}
	}
}

// factorHeld is requireFactor's check, for handlers that ask it of some
// requests only (ending another device's session, not this one's): it
// answers and reports false when the session lacks the factor its
// account has.
func (u *stepUp) factorHeld(w http.ResponseWriter, r *http.Request, page bool) bool {
	s := session(r)
	if signin.KindOfSession(s) != signin.KindLocal || signin.HasSecondFactor(s) {
		return true
	}
	// The same rule as the sign-in's (accounts.SignInFactors): an account
	// with an app or a passkey signs in with it, so a session without it
	// is one of before the factor.
	factors, err := u.accounts.SignInFactors(r.Context(), s.UserID())
	if err != nil && !errors.Is(err, accounts.ErrNoSuchUser) {
		u.fail(w, r, page, err)
		return false
	}
	if factors.Any() {
		u.fail(w, r, page, errFactorRequired)
		return false
	}
	return true
}

// refuse answers a step-up the gateway cannot lead the user through
// itself: 403 reauth_required without a URL, or the account page with the
// message.
func (u *stepUp) refuse(w http.ResponseWriter, page bool, message, how string) {
	if page {
		seeOther(w, u.auth+"/account?stepup="+how)
		return
	}
	httpjson.Write(w, http.StatusForbidden, map[string]string{"error": "reauth_required", "message": message})
}

// reauthRequired answers a script's sensitive request whose session is
// valid but whose login is too old (step-up): 403 reauth_required with
// message and where to prove who the user is, under key ("reauth_url" for
// the password re-entry, "login_url" for a new login). Not 401: the user
// is authenticated, and a client that treats 401 as "logged out" must not
// drop a live session (see docs/endpoints.md).
func reauthRequired(w http.ResponseWriter, message, key, url string) {
	httpjson.Write(w, http.StatusForbidden, map[string]string{"error": "reauth_required", "message": message, key: url})
}

// providerURL returns where a provider's user signs in again for a
// step-up (max_age and prompt=login, coming back to returnTo), or "" for
// other sessions.
func (u *stepUp) providerURL(s *cloakroom.Session, returnTo string) string {
	if u.oidc == nil {
		return ""
	}
	return u.oidc.ProviderReauthURL(s, u.window, returnTo)
}

// hint tells the account page's user how they will step up when their
// sign-in is old: "" for a local account (the forms ask for the password)
// and for a recent sign-in.
func (u *stepUp) hint(s *cloakroom.Session) string {
	if u.recent(s) {
		return ""
	}
	switch signin.KindOfSession(s) {
	case signin.KindProvider:
		return "Logging out another device sends you to sign in again at your identity provider first."
	case signin.KindVault:
		return "To log out another device, sign in again through the app first, then come back here within " + formatDuration(u.window) + "."
	}
	return ""
}

// routes refuses requests of a logged-in session under a step-up prefix
// of the OpenID client (an API route, or an account action such as
// /auth/sessions/) when its sign-in is too old: 403 reauth_required with
// the login URL for script, a redirect for navigations. Requests without a
// session go on to their handler, which answers them as usual.
//
// Under a prefix of Config.FactorRoutes, a logged-in session signed in
// without a second factor is refused first: 403 second_factor_required
// (a page for a navigation), whatever its age.
func (u *stepUp) routes(next http.Handler) http.Handler {
	if u.oidc == nil && len(u.factorRoutes) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := u.sessions.Session(r); s.LoggedIn() {
			if !signin.HasSecondFactor(s) && slices.ContainsFunc(u.factorRoutes, func(p string) bool { return httpx.PathUnder(r.URL.Path, p) }) {
				u.fail(w, r, httpx.IsNavigation(r), factorRouteRefusal(s))
				return
			}
			if u.oidc != nil {
				if login := u.oidc.StepUpURL(s, r.URL.Path); login != "" {
					reauthenticate(w, r, login)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// factorRouteRefusal is the answer of a FactorRoutes request from a
// session without a second factor, telling its kind of user what to do.
func factorRouteRefusal(s *cloakroom.Session) *problem {
	msg := "This needs two-step verification: sign out, then sign in again with the code from your authenticator app or a passkey (set one up on your account page first if you have none)."
	switch signin.KindOfSession(s) {
	case signin.KindProvider:
		msg = "This needs two-step verification: sign out, then sign in again at your identity provider with a second factor."
	case signin.KindVault:
		msg = "This needs two-step verification, which sign-ins through the app do not provide."
	}
	return &problem{Status: http.StatusForbidden, Code: "second_factor_required", Message: msg}
}

// reauthenticate sends a navigation to login, and answers a script 403
// reauth_required naming it.
func reauthenticate(w http.ResponseWriter, r *http.Request, login string) {
	if httpx.IsNavigation(r) {
		seeOther(w, login)
		return
	}
	reauthRequired(w, "Log in again to continue.", "login_url", login)
}

// errNotRecent is the page answer of a form that ends other sessions
// without a password while the sign-in is old; errNotRecentDevice that of
// the form that ends one other device.
var (
	errNotRecent        = &problem{Status: http.StatusForbidden, Code: "reauth_required", Message: "Enter your password to log out your other devices: your sign-in is more than a few minutes old."}
	errNotRecentTOTP    = &problem{Status: http.StatusForbidden, Code: "reauth_required", Message: "Enter your password to set up an authenticator app: your sign-in is more than a few minutes old."}
	errNotRecentPasskey = &problem{Status: http.StatusForbidden, Code: "reauth_required", Message: "Enter your password to add or remove a passkey: your sign-in is more than a few minutes old."}
	errNotRecentDevice  = &problem{Status: http.StatusForbidden, Code: "reauth_required", Message: "Enter your password to log out that device: your sign-in is more than a few minutes old."}
)
