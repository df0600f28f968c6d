package proxy

import (
	"fmt"
	"net/http"
	"slices"
)

// Mode is how the requests of one route go upstream, beyond what every
// route does (the session cookie removed, client-sent identity headers
// replaced, the internal JWT): the token vault attaches an app's own token
// it keeps for the user (package vault), OpenID token relay sends the
// user's access token (package oidcbff). A new mode is one implementation
// of this interface, registered on its routes with Route.Mode; a route
// without one is plain.
type Mode interface {
	// Anonymous reports whether the route takes requests without a
	// logged-in session, for the upstream to judge (an app's own login
	// behind the vault). A plain route needs a session.
	Anonymous() bool
	// Prepare adjusts the Call of one request of the route before it is
	// proxied: the token to send, the exchange that inspects the answer.
	// r has passed through the session middleware. It answers w itself
	// and reports false when the request must not go upstream.
	Prepare(w http.ResponseWriter, r *http.Request, c Call) (Call, bool)
}

// Anonymous reports whether r's route takes requests without a session
// (see [Mode.Anonymous]): false for a plain route.
func (r Route) Anonymous() bool { return r.Mode != nil && r.Mode.Anonymous() }

// SetModes registers modes on routes by prefix ("/api/", or without the
// trailing slash), before [New]. A prefix that is none of the routes', or
// a route given two modes, is an error wrapping ErrInvalidRoute.
func SetModes(routes []Route, modes map[string]Mode) error {
	for prefix, m := range modes {
		p, err := normalisePrefix(prefix)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(routes, func(r Route) bool { return r.Prefix == p })
		switch {
		case i < 0:
			return fmt.Errorf("%w: %q is not the prefix of a route", ErrInvalidRoute, prefix)
		case routes[i].Mode != nil && routes[i].Mode != m:
			return fmt.Errorf("%w: route %q is given two modes", ErrInvalidRoute, p)
		}
		routes[i].Mode = m
	}
	return nil
}
