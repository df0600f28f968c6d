package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
)

// problem is an answer a handler gives instead of doing what was asked:
// a status, a stable code for scripts and a message for people. Handlers
// return or pass it to [base.fail], the gateway's one error writer, which
// answers it as JSON or as a page.
type problem struct {
	Status  int
	Code    string
	Message string
	// Location, for a page, is where to send the browser instead of
	// showing the message (a session that ended: the login page).
	Location string
}

func (p *problem) Error() string { return p.Message }

func newProblem(status int, code, format string, args ...any) *problem {
	return &problem{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Problems several handlers answer alike.
var (
	errUnauthenticated = &problem{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "The session has ended."}
	errStoreDown       = &problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "The session store cannot be reached. Try again shortly."}
	errAccountsDown    = &problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "The account store cannot be reached. Try again shortly."}
	errInternal        = &problem{Status: http.StatusInternalServerError, Code: "internal", Message: "Something went wrong."}
	errFormExpired     = &problem{Status: http.StatusForbidden, Code: "csrf", Message: "This form has expired, so nothing was done. Reload the page and try again."}
	errNoSuchPath      = &problem{Status: http.StatusNotFound, Code: "not_found", Message: "There is no page or endpoint at this address."}
)

// problemOf maps err to its answer: a problem as it is; a failure of the
// session or account store, a session that ended or was renewed by another
// request meanwhile, to theirs. Anything else is unexpected: 500, with the
// cause logged by the caller, never sent.
func problemOf(err error) (p *problem, expected bool) {
	switch {
	case errors.As(err, &p):
		return p, true
	case errors.Is(err, cloakroom.ErrStoreUnavailable):
		return errStoreDown, true
	case errors.Is(err, accounts.ErrStoreUnavailable):
		return errAccountsDown, true
	case errors.Is(err, cloakroom.ErrRotatedMeanwhile):
		// Another request of this session did it first (a double click,
		// another tab); its response carried the new cookie.
		return &problem{Status: http.StatusConflict, Code: "conflict", Message: "Another request just did this. Reload the page."}, true
	case errors.Is(err, cloakroom.ErrNotLoggedIn), errors.Is(err, cloakroom.ErrNotFound):
		return errUnauthenticated, true
	}
	return errInternal, false
}

// fail answers err (see problemOf) to a script as JSON {"error",
// "message"}, or to a page: a problem with a Location redirects there; the
// account page's forms show it next to the form that was sent; anything
// else gets the styled error page, with links back to the account page and
// the application. Unexpected errors are logged.
func (b *base) fail(w http.ResponseWriter, r *http.Request, page bool, err error) {
	p, expected := problemOf(err)
	if !expected {
		b.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if p.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" { // "busy" set its own
		w.Header().Set("Retry-After", "5")
	}
	if !page {
		httpjson.Error(w, p.Status, p.Code, p.Message)
		return
	}
	if loc := pageLocation(b.auth, p); loc != "" {
		seeOther(w, loc)
		return
	}
	if form := pageFormOf(r); form != "" && b.forms != nil && b.forms.account != nil && b.forms.account(w, r, form, p) {
		return
	}
	b.errorPage(w, r, p)
}

// errorPage renders p as the styled error page. A logged-in user keeps the
// header (who, account, log out); nothing from the request is shown.
func (b *base) errorPage(w http.ResponseWriter, r *http.Request, p *problem) {
	data := pageData{Title: pageTitle(p.Status), Error: sentence(p.Message)}
	if s := b.sessions.Session(r); s.LoggedIn() {
		data.User, data.CSRFToken = s.UserID(), s.CSRFToken()
	}
	b.render(w, r, p.Status, "error", data)
}

// pageTitle is the error page's heading for a status.
func pageTitle(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge:
		return "That did not work"
	case http.StatusUnauthorized:
		return "Not signed in"
	case http.StatusForbidden:
		return "Not allowed"
	case http.StatusNotFound:
		return "Page not found"
	case http.StatusTooManyRequests:
		return "Too many attempts"
	case http.StatusRequestHeaderFieldsTooLarge:
		return "Too many cookies"
	case http.StatusServiceUnavailable:
		return "Temporarily unavailable"
	}
	return "Something went wrong"
}

// sentence starts a message shown on its own with a capital letter: some
// messages were written to follow a status text ("Forbidden: enter ...").
func sentence(msg string) string {
	r, size := utf8.DecodeRuneInString(msg)
	if size == 0 || !unicode.IsLower(r) {
		return msg
	}
	return string(unicode.ToUpper(r)) + msg[size:]
}

// pageFormKey carries the name of the built-in page form a request posts
// (see handlers.routes), so that fail can show a problem next to it.
type pageFormKey struct{}

// withPageForm marks the route's requests as posts of the named form.
func withPageForm(form string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pageFormKey{}, form)))
	})
}

// pageFormOf returns the form a request posts, "" for any other request.
func pageFormOf(r *http.Request) string {
	form, _ := r.Context().Value(pageFormKey{}).(string)
	return form
}

// formPages re-render the page a form came from with a problem next to
// the form. It is shared by every copy of base and filled in once the
// pages exist.
type formPages struct {
	// account re-renders the account page; false when it could not (the
	// store is down), and the caller answers with the error page.
	account func(w http.ResponseWriter, r *http.Request, form string, p *problem) bool
}

// pageLocation is where a page goes instead of showing p: the login page
// for a session that ended, the account page when another request did the
// same thing first.
func pageLocation(auth string, p *problem) string {
	switch {
	case p.Location != "":
		return p.Location
	case p.Status == http.StatusUnauthorized && p.Code == errUnauthenticated.Code:
		return auth + "/login?ended=" + endedSession
	case p.Status == http.StatusConflict:
		return auth + "/account"
	}
	return ""
}

// timeStore runs one store operation, recording its duration and counting
// store failures.
func (b *base) timeStore(op string, f func() error) error {
	start := time.Now()
	err := f()
	b.metrics.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if errors.Is(err, cloakroom.ErrStoreUnavailable) {
		b.metrics.storeErrors.Inc()
	}
	return err
}

// audit writes one audit line: msg with the request's client address and
// session reference first.
func (b *base) audit(r *http.Request, s *cloakroom.Session, msg string, attrs ...slog.Attr) {
	b.log.LogAttrs(r.Context(), slog.LevelInfo, msg, append([]slog.Attr{
		slog.String("client_ip", s.ClientIP()), slog.String("session", s.Ref()),
	}, attrs...)...)
}
