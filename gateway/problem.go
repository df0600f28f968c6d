package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

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

// fail answers err (see problemOf) to a script as JSON {"error", "message"},
// or to a page: a problem with a Location redirects there, others get a
// short text page. Unexpected errors are logged.
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
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(p.Status)+": "+p.Message, p.Status)
}

// pageLocation is where a page goes instead of showing p: the login page
// for a session that ended, the account page when another request did the
// same thing first.
func pageLocation(auth string, p *problem) string {
	switch {
	case p.Location != "":
		return p.Location
	case p.Status == http.StatusUnauthorized && p.Code == errUnauthenticated.Code:
		return auth + "/login"
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
