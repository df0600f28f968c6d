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
}

// accountPage lists the user's sessions with buttons to end them.
func (g *Gateway) accountPage(w http.ResponseWriter, r *http.Request) {
	s, ok := g.requireSession(w, r, g.auth+"/account")
	if !ok {
		return
	}
	g.renderAccount(w, r, s, http.StatusOK, notices[r.URL.Query().Get("done")], "")
}

// renderAccount shows the account page of s with a notice or an error.
func (g *Gateway) renderAccount(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, status int, notice, errMsg string) {
	var devices []cloakroom.Device
	err := g.timeStore("list", func() (err error) {
		devices, err = s.Devices(r.Context())
		return err
	})
	if err != nil {
		g.pageFailed(w, r, err)
		return
	}
	created, _, absolute := s.Times()
	kind, recent := signin.KindOfSession(s), g.recentAuth(s)
	data := pageData{
		Title: "Your account", User: s.UserID(), CSRFToken: s.CSRFToken(),
		Notice: notice, Error: errMsg,
		Email: signin.Email(s), Roles: signin.Roles(s),
		Created: formatTime(created), AbsoluteExpiry: formatTime(absolute),
		IdleTimeout:  formatDuration(g.sessions.Config().IdleTimeout),
		LocalAccount: kind == signin.KindLocal,
		// Only a local account has a password to ask for; the others
		// step up by signing in again, at the provider or in the app.
		StepUp: !recent && kind == signin.KindLocal,
	}
	if !recent {
		switch kind {
		case signin.KindProvider:
			data.StepUpHint = "Logging out another device sends you to sign in again at your identity provider first."
		case signin.KindVault:
			data.StepUpHint = "To log out another device, sign in again through the app first, then come back here within " + formatDuration(g.cfg.StepUpWindow) + "."
		}
	}
	now := g.cfg.Now()
	for _, d := range devices {
		data.Devices = append(data.Devices, deviceRow{
			Handle: d.Handle, Label: d.Label, IP: d.IP,
			Created: formatTime(d.CreatedAt), LastSeen: formatAgo(now, d.LastSeen), LastSeenAt: formatTime(d.LastSeen),
			Current: d.Current, Persistent: d.Persistent,
		})
	}
	g.render(w, r, status, "account", data)
}

// accountForm checks a POST from the account page: logged in, a parsable
// form, and the CSRF token in its hidden field, always (defence in depth:
// the middleware checks the header only when Fetch Metadata and Origin are
// both missing).
func (g *Gateway) accountForm(w http.ResponseWriter, r *http.Request) (*cloakroom.Session, bool) {
	s, ok := g.requireSession(w, r, g.auth+"/account")
	if !ok {
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Bad Request: the form could not be parsed.", http.StatusBadRequest)
		return nil, false
	}
	if !g.checkCSRF(r, s, true) {
		g.forbidden(w, r, true)
		return nil, false
	}
	return s, true
}

func (g *Gateway) accountRevoke(w http.ResponseWriter, r *http.Request) {
	s, ok := g.accountForm(w, r)
	if !ok {
		return
	}
	handle := r.PostForm.Get("handle") // parsed by accountForm
	if !validHandle(handle) {
		http.Error(w, "Bad Request: the session handle is malformed.", http.StatusBadRequest)
		return
	}
	current := s.Handle() == handle
	if !current && !g.stepUp(w, r, s, true, g.auth+"/account") {
		return
	}
	err := g.revokeDevice(r, s, handle)
	switch {
	case errors.Is(err, cloakroom.ErrNotFound):
		// Already gone (revoked elsewhere, or expired): the list is what
		// the user wanted anyway.
		seeOther(w, g.auth+"/account?done=revoked")
	case err != nil:
		g.pageFailed(w, r, err)
	case current:
		seeOther(w, g.auth+"/login")
	default:
		seeOther(w, g.auth+"/account?done=revoked")
	}
}

func (g *Gateway) accountRevokeOthers(w http.ResponseWriter, r *http.Request) {
	s, ok := g.accountForm(w, r)
	if !ok {
		return
	}
	if !g.stepUp(w, r, s, true, g.auth+"/account") {
		return
	}
	if err := g.revokeOthers(r, s); err != nil {
		g.pageFailed(w, r, err)
		return
	}
	seeOther(w, g.auth+"/account?done=others")
}

// stepUpForm lets an account form of a local account that ends other
// sessions through when its password field is right (ASVS 7.5.2). It
// answers the request and returns false otherwise.
func (g *Gateway) stepUpForm(w http.ResponseWriter, r *http.Request, s *cloakroom.Session) bool {
	password := r.PostForm.Get("password")
	if password == "" || len(password) > maxPasswordLen {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "Forbidden: enter your password to log out your other devices.", http.StatusForbidden)
		return false
	}
	if !g.checkOwnPassword(w, r, s, password, true) {
		return false
	}
	g.admission.MarkAuthenticated(s)
	return true
}

func (g *Gateway) accountRevokeAll(w http.ResponseWriter, r *http.Request) {
	s, ok := g.accountForm(w, r)
	if !ok {
		return
	}
	if err := g.revokeEverywhere(r, s); err != nil {
		g.pageFailed(w, r, err)
		return
	}
	seeOther(w, g.auth+"/login")
}

// pageFailed is storeFailed for the HTML pages.
func (g *Gateway) pageFailed(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case errors.Is(err, cloakroom.ErrStoreUnavailable):
		http.Error(w, "Service Unavailable: the session store cannot be reached. Try again shortly.", http.StatusServiceUnavailable)
	case errors.Is(err, cloakroom.ErrRotatedMeanwhile):
		seeOther(w, g.auth+"/account") // another request did it first
	case errors.Is(err, cloakroom.ErrNotLoggedIn), errors.Is(err, cloakroom.ErrNotFound):
		seeOther(w, g.auth+"/login")
	default:
		g.log.ErrorContext(r.Context(), "session operation failed", "path", r.URL.Path, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
	}
}
