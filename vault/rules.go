package vault

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpx"
)

// SessionRules are what the session manager must know of the vault before
// any request reaches a route: which requests the placeholder vouches for
// (cloakroom.Config.CSRFProof) and which count as use of a vaulted session
// (cloakroom.Config.Activity). Build them from the same routes as the
// [Vault], before the session manager, and set them with
// [SessionRules.Configure].
type SessionRules struct {
	routes []*route // longest prefix first
}

// NewSessionRules checks routes as [New] does and returns their rules.
func NewSessionRules(routes []Route) (*SessionRules, error) {
	var problems []error
	rules := &SessionRules{}
	for _, r := range routes {
		rt, errs := newRoute(r)
		problems = append(problems, errs...)
		rules.routes = append(rules.routes, rt)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	slices.SortFunc(rules.routes, func(a, b *route) int { return len(b.Prefix) - len(a.Prefix) })
	return rules, nil
}

// Configure sets cfg's CSRFProof and Activity to the rules'.
func (sr *SessionRules) Configure(cfg *cloakroom.Config) {
	cfg.CSRFProof, cfg.Activity = sr.CSRFProof, sr.Activity
}

// CSRFProof reports whether an unsafe request on a vault route proves it
// was not forged without the synchronizer token (cloakroom.Config.CSRFProof):
//
//   - it carries the session's own placeholder in the route's header. A
//     cross-site page cannot set that header without a preflight the
//     gateway does not grant, and does not know the placeholder, so
//     unchanged API clients (which send it as their token) need no
//     Origin or X-CSRF-Token;
//   - or it is one of the route's capture requests (a sign-in) on a route
//     that attaches the token only with the placeholder: the cookie lends
//     it no authority (the backend receives no token with it), and its
//     answer replaces the session.
//
// Every other cookie-only unsafe request still needs Origin, Fetch
// Metadata or the token.
func (sr *SessionRules) CSRFProof(r *http.Request, s *cloakroom.Session) bool {
	rt := sr.routeOf(r.URL.Path)
	if rt == nil {
		return false
	}
	if sessionPlaceholder(s, rt) != "" && placeholderPresented(r.Header.Values(rt.Header), sessionPlaceholder(s, rt)) {
		return true
	}
	return !rt.AttachOnCookie && rt.captureOf(r) != nil
}

// Activity reports whether a request is use of its session
// (cloakroom.Config.Activity). A session the vault started is used only
// by calls to its route that carry its placeholder, unless the route
// attaches on the cookie alone: pages, the gateway's own endpoints and
// calls without the placeholder (an SPA that has forgotten its token)
// never move its idle deadline. Other sessions are used by every request.
func (sr *SessionRules) Activity(r *http.Request, s *cloakroom.Session) bool {
	prefix := s.GetString(keyRoute)
	if prefix == "" {
		return true // not a vault session
	}
	rt := sr.route(prefix)
	switch {
	case rt == nil:
		return false // a route no longer configured: its sessions cannot be used
	case rt.AttachOnCookie:
		return true
	}
	return httpx.PathUnder(r.URL.Path, rt.Prefix) && placeholderPresented(r.Header.Values(rt.Header), sessionPlaceholder(s, rt))
}

func (sr *SessionRules) routeOf(path string) *route {
	for _, rt := range sr.routes {
		if httpx.PathUnder(path, rt.Prefix) {
			return rt
		}
	}
	return nil
}

func (sr *SessionRules) route(prefix string) *route {
	for _, rt := range sr.routes {
		if rt.Prefix == prefix {
			return rt
		}
	}
	return nil
}

// sessionPlaceholder returns the placeholder of s when s holds a token of
// rt, "" otherwise.
func sessionPlaceholder(s *cloakroom.Session, rt *route) string {
	if !s.LoggedIn() || s.GetString(keyRoute) != rt.Prefix {
		return ""
	}
	return s.GetString(keyPlaceholder)
}

// placeholderPresented reports whether a request's values of the token
// header hold placeholder, alone or after a scheme ("Token <placeholder>"),
// compared in constant time.
func placeholderPresented(values []string, placeholder string) bool {
	v, ok := presentedValue(values)
	return ok && placeholder != "" && len(v) == len(placeholder) && subtle.ConstantTimeCompare([]byte(v), []byte(placeholder)) == 1
}

// presentedValue returns the one value of the token header, without its
// scheme; false when there is none or more than one.
func presentedValue(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	v := strings.TrimSpace(values[0])
	if i := strings.LastIndexByte(v, ' '); i >= 0 {
		v = v[i+1:]
	}
	return v, v != ""
}
