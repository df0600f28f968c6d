package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
)

// base is what every part of the gateway uses: the session manager, the
// auth prefix, the clock, the log, the metrics and the built-in pages.
// Each handler type holds it and only the other parts it needs.
type base struct {
	sessions *cloakroom.Manager
	auth     string
	now      func() time.Time
	log      *slog.Logger
	metrics  *Metrics
	pages    pages
	pageCSP  string     // see pageCSP
	forms    *formPages // shows a form's problem on its page; see fail
	passkeys bool       // passkeys are on: the pages offer them and run the script
}

// render executes a page into a buffer first, so a template error becomes a
// clean 500 instead of half a page.
func (b *base) render(w http.ResponseWriter, r *http.Request, status int, name string, data pageData) {
	data.Auth, data.Passkeys = b.auth, b.passkeys
	if data.AppURL == "" {
		data.AppURL = "/"
	}
	var buf bytes.Buffer
	if err := b.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		b.log.ErrorContext(r.Context(), "render page", "page", name, "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w.Header(), b.pageCSP)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Why a session ended, as the login page's ended= parameter: a hint that
// only chooses one of the page's fixed messages (signedOutNotices). It
// carries nothing secret and is never trusted for anything else.
const (
	endedLogout     = "logout"     // this browser logged out
	endedEverywhere = "everywhere" // the user logged out everywhere
	// endedSession: the request carried a session cookie that names no
	// live session. The store forgets an expired session as it forgets a
	// revoked one, so the two cannot be told apart.
	endedSession = "session"
	// endedDevice: the session is bound to a device (DBSC) and the
	// request lacked its valid bound cookie: a copied cookie jar, or a
	// browser that could not refresh it. The session was not ended.
	endedDevice = "device"
)

// loginURL returns the login page's URL, with return_to when it is a safe
// local path, and ended (one of the ended* hints, or "").
func (b *base) loginURL(returnTo, ended string) string {
	u, sep := b.auth+"/login", "?"
	if returnTo != "" {
		if safe := httpx.SafeReturnTo(returnTo); safe != "/" || returnTo == "/" {
			u, sep = u+"?return_to="+url.QueryEscape(safe), "&"
		}
	}
	if ended != "" {
		u += sep + "ended=" + url.QueryEscape(ended)
	}
	return u
}

// endedHint is the ended= hint for a request that is not logged in:
// endedSession when it carried a session cookie (the session ended since
// the browser got it), else "".
func endedHint(s *cloakroom.Session) string {
	if s.BindingErr() != nil {
		return endedDevice
	}
	if s.CookieSent() {
		return endedSession
	}
	return ""
}

// unavailable answers a request whose session could not be loaded. The
// request is never served as logged in.
func (b *base) unavailable(w http.ResponseWriter, r *http.Request) {
	b.fail(w, r, httpx.IsNavigation(r), errStoreDown)
}

// loggedIn returns the request's session when it is logged in. Otherwise
// it answers: 503 when the store failed, else 401 JSON for scripts or a
// redirect to the login page for navigations, which come back to returnTo
// ("" for none).
func (b *base) loggedIn(w http.ResponseWriter, r *http.Request, returnTo string) (*cloakroom.Session, bool) {
	s := b.sessions.Session(r)
	if s.Err() != nil {
		b.unavailable(w, r)
		return nil, false
	}
	if s.LoggedIn() {
		return s, true
	}
	ended := endedHint(s)
	loginURL := b.loginURL(returnTo, ended)
	if httpx.IsNavigation(r) {
		seeOther(w, loginURL)
		return nil, false
	}
	unauthenticated(w, loginURL, ended)
	return nil, false
}

// unauthenticated answers a script's request that is not logged in: 401
// with where to log in and, when the request's session ended, "ended" so
// that the page can tell its user why (see endedHint).
func unauthenticated(w http.ResponseWriter, loginURL, ended string) {
	body := map[string]string{"error": "unauthenticated", "message": "Log in first.", "login_url": loginURL}
	if ended != "" {
		body["ended"] = ended
		body["message"] = signedOutNotices[ended]
	}
	httpjson.Write(w, http.StatusUnauthorized, body)
}

// errTooManyCookies answers a request whose cookies exceed what the
// session middleware reads (cloakroom.MaxCookieHeader).
var errTooManyCookies = &problem{
	Status: http.StatusRequestHeaderFieldsTooLarge, Code: "cookies_too_large",
	Message: fmt.Sprintf("Your browser sent more than %d KiB of cookies for this site, more than the gateway accepts, so it cannot find your session. "+
		"Clear this site's cookies in your browser's settings, then sign in again.", cloakroom.MaxCookieHeader>>10),
}

// cookieLimit answers 431 to a request whose Cookie headers are larger
// than the session middleware reads. The middleware would treat it as
// carrying no session (it fails closed) and the user would be sent to sign
// in, get a cookie that the oversized header hides again, and loop. The
// built-in pages' stylesheet and icon need no session and are served
// anyway, so that the 431 page itself is styled.
func (b *base) cookieLimit(next http.Handler) http.Handler {
	assets := b.auth + "/assets/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, assets) {
			next.ServeHTTP(w, r)
			return
		}
		size := 0
		for _, line := range r.Header["Cookie"] {
			size += len(line)
		}
		if size > cloakroom.MaxCookieHeader {
			b.fail(w, r, httpx.IsNavigation(r), errTooManyCookies)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sessionKey carries the logged-in session a wrapper checked to the handler.
type sessionKey struct{}

// session returns the logged-in session the route's wrapper checked.
func session(r *http.Request) *cloakroom.Session {
	return r.Context().Value(sessionKey{}).(*cloakroom.Session)
}

// Wrappers state what a route needs, chi-style, so a handler does not
// repeat the checks.

// api lets a JSON endpoint's request through with a logged-in session;
// otherwise 503 or 401 JSON (without return_to: coming back to a JSON
// endpoint after a login helps nobody).
func (b *base) api(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := b.sessions.Session(r)
		if s.Err() != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The session store cannot be reached. Try again shortly.")
			return
		}
		if !s.LoggedIn() {
			ended := endedHint(s)
			unauthenticated(w, b.loginURL("", ended), ended)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

// page lets a page's request through with a logged-in session; otherwise
// 503, or a redirect to the login page that comes back to returnTo.
func (b *base) page(returnTo string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := b.loggedIn(w, r, returnTo)
		if !ok {
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

// csrfMode says which requests of a route must carry the session's
// synchronizer token in a csrf_token field, and how a refusal is answered.
type csrfMode int

const (
	// csrfJSON: a JSON endpoint. A body an HTML form could have sent must
	// carry the field; a refusal is JSON.
	csrfJSON csrfMode = iota
	// csrfForm: an endpoint both forms and scripts use (logout). A form
	// body must carry the field; a refused form gets a page, a script
	// JSON.
	csrfForm
	// csrfPage: a built-in page's form (the account page). Every request
	// must carry the field, whatever its headers; the body is parsed as a
	// form here; a refusal is a page.
	csrfPage
)

// formCSRF checks the synchronizer token in a form field, the part of CSRF
// defence the session middleware cannot do: it never reads bodies. The
// middleware has already refused cross-site requests (Fetch Metadata and
// Origin), a wrong X-CSRF-Token header, and a session request with neither
// Fetch Metadata nor Origin that lacks the right header. A request whose
// body an HTML form could have sent (a form or text/plain) must also carry
// the session's token in its csrf_token field, and on a built-in page's
// forms every request must, so that a same-origin form post proves it came
// from our page whatever the headers say. Without a live session there is
// no ambient authority to abuse. The comparison is the core's.
func (b *base) formCSRF(mode csrfMode, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form := isFormContent(r)
		var parseErr error
		if form || mode == csrfPage {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			parseErr = r.ParseForm()
		}
		var tooBig *http.MaxBytesError
		if errors.As(parseErr, &tooBig) {
			// Said as such, not taken for a missing token.
			b.fail(w, r, mode == csrfPage || mode == csrfForm && form, errTooLarge(tooBig.Limit))
			return
		}
		if mode == csrfPage && parseErr != nil {
			b.fail(w, r, true, badInput(http.StatusBadRequest, "The form could not be read. Reload the page and try again."))
			return
		}
		s := b.sessions.Session(r)
		if (form || mode == csrfPage) && s.LoggedIn() && !s.ValidCSRFToken(formField(r, "csrf_token")) {
			b.log.WarnContext(r.Context(), "csrf token missing or wrong", "method", r.Method, "path", r.URL.Path,
				"client_ip", s.ClientIP(), "session", s.Ref())
			if mode == csrfPage || mode == csrfForm && form {
				b.fail(w, r, true, errFormExpired)
				return
			}
			httpjson.Error(w, http.StatusForbidden, "csrf", "Missing or wrong CSRF token.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// wantsJSON guesses the answer format for a request whose body could not
// tell: script requests get JSON, navigations get a page.
func wantsJSON(r *http.Request) bool { return !httpx.IsNavigation(r) }

// auditRevocation writes the "revocation" audit line of every kind (a
// user's own and the admin's) and counts the successful ones; who and from
// where go in attrs.
func (b *base) auditRevocation(r *http.Request, kind, user string, err error, attrs ...slog.Attr) {
	outcome := "success"
	switch {
	case errors.Is(err, cloakroom.ErrNotFound):
		outcome = outcomeUnknownSession // the client's mistake, not a failure
	case err != nil:
		outcome = "error"
	default:
		b.metrics.revocations.WithLabelValues(kind).Inc()
	}
	attrs = append([]slog.Attr{slog.String("kind", kind), slog.String("outcome", outcome), slog.String("user", user)}, attrs...)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	b.log.LogAttrs(r.Context(), slog.LevelInfo, "revocation", attrs...)
}

// devices lists the session's user's devices, timed as a store call.
func (b *base) devices(r *http.Request, s *cloakroom.Session) (devices []cloakroom.Device, err error) {
	err = b.timeStore("list", func() (err error) {
		devices, err = s.Devices(r.Context())
		return err
	})
	return devices, err
}
