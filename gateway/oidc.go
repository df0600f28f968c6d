package gateway

import (
	"errors"
	"net/http"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/oidcbff"
)

// oidcErrorPage renders a message from the OIDC client (a refused or
// failed sign-in) as the login page with an error and the provider
// buttons, so a refused user sees why and is never redirected in a loop.
func (g *Gateway) oidcErrorPage(w http.ResponseWriter, r *http.Request, status int, message string) {
	g.render(w, r, status, "login", pageData{Title: "Sign in", Error: message, ReturnTo: "/", Providers: g.providerLinks("/")})
}

func (g *Gateway) providerLinks(returnTo string) []oidcbff.ProviderLink {
	if g.cfg.OIDC == nil {
		return nil
	}
	return g.cfg.OIDC.Links(returnTo)
}

// withStepUp refuses requests of a logged-in session under a step-up
// prefix (an API route or an account action such as /auth/sessions/) when
// its login is too old: 403 reauth_required with the login URL for script,
// a redirect for navigations. Requests without a session go on to their handler,
// which answers them as usual.
func (g *Gateway) withStepUp(next http.Handler) http.Handler {
	if g.cfg.OIDC == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := g.sessions.Session(r); s.LoggedIn() {
			if login := g.cfg.OIDC.StepUpURL(s, r.URL.Path); login != "" {
				g.reauthenticate(w, r, login)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) reauthenticate(w http.ResponseWriter, r *http.Request, login string) {
	if isNavigation(r) {
		seeOther(w, login)
		return
	}
	reauthRequired(w, "Log in again to continue.", "login_url", login)
}

// providerReauth answers a sensitive action of a session from an OpenID
// provider whose login is older than the step-up window: its user has no
// password to enter again, so it is sent to log in at the provider with
// max_age and prompt=login (a page comes back to returnTo). It reports
// false, answering nothing, for other sessions.
func (g *Gateway) providerReauth(w http.ResponseWriter, s *cloakroom.Session, page bool, returnTo string) bool {
	login := g.providerLogin(s, returnTo)
	switch {
	case login == "":
		return false
	case page:
		seeOther(w, login)
	default:
		reauthRequired(w, "Sign in again at your identity provider to do this.", "login_url", login)
	}
	return true
}

// providerLogin returns the provider's step-up login URL of a session from
// an OpenID provider, or "" for other sessions.
func (g *Gateway) providerLogin(s *cloakroom.Session, returnTo string) string {
	if g.cfg.OIDC == nil {
		return ""
	}
	return g.cfg.OIDC.ProviderReauthURL(s, g.cfg.StepUpWindow, returnTo)
}

// oidcUpstream applies the OIDC client's step-up rules and token relay to a
// proxied request. It answers and reports false when the request must not
// go upstream.
func (g *Gateway) oidcUpstream(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, prefix string) (*http.Request, bool) {
	if g.cfg.OIDC == nil {
		return r, true
	}
	ctx, err := g.cfg.OIDC.Upstream(r, s, prefix)
	var reauth *oidcbff.ReauthError
	switch {
	case err == nil:
		return r.WithContext(ctx), true
	case errors.As(err, &reauth):
		g.reauthenticate(w, r, reauth.LoginURL)
		return nil, false
	case errors.Is(err, oidcbff.ErrSessionEnded):
		// The provider refused a refresh: the sign-in is over everywhere.
		g.log.InfoContext(r.Context(), "session ended by the provider", "user", s.UserID(), "session", s.Ref(), "reason", err.Error())
		_ = s.Logout(r.Context())
		httpjson.Write(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthenticated", "message": "Your sign-in has ended. Log in again.", "login_url": g.auth + "/login",
		})
		return nil, false
	default:
		g.log.WarnContext(r.Context(), "access token unavailable", "user", s.UserID(), "err", err)
		w.Header().Set("Retry-After", "5")
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The identity provider cannot be reached. Try again shortly.")
		return nil, false
	}
}

// oidcEndSession deletes the session's provider tokens and returns the
// provider's end-session URL ("" for none). Only a form logout, a top-level
// navigation, gets the ID token as id_token_hint; a script's logout gets a
// URL without it, so no token reaches page script.
func (g *Gateway) oidcEndSession(r *http.Request, s *cloakroom.Session, form bool) string {
	if g.cfg.OIDC == nil || !s.LoggedIn() {
		return ""
	}
	return g.cfg.OIDC.EndSession(r.Context(), s, form)
}

// oidcLoggedOut finishes a logout by sending the browser to the provider's
// end-session endpoint.
func (g *Gateway) oidcLoggedOut(w http.ResponseWriter, endSession string, form bool) {
	if form {
		h := w.Header()
		h.Set("Location", endSession)
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"logout_url": endSession})
}
