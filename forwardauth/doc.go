// Package forwardauth lets the proxies teams already run (nginx
// auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy's HTTP
// ext_authz) ask cloakroom about each request. The proxy sends a decision
// request describing the original one; cloakroom answers 200 with the
// identity headers for the proxy to pass on, or refuses it.
//
// There is one decision and thin adapters: each adapter reads where its
// proxy puts the original method, host and URI, and the decision runs the
// core's session middleware on the request rebuilt from them, so the
// session cookie, the idle and absolute timeouts, generations, global
// revocation and the cross-origin and CSRF rules are exactly the core's.
// What the paths need (public, signed in, roles) is configured here by
// host and path prefix, never taken from the decision request. Forwarded
// data is believed only from the configured proxy addresses; a decision
// request from anywhere else is refused. A decision answer never sets a
// cookie, and an allowing one gives the proxy the browser's cookies
// without cloakroom's to send the app, which never holds the session
// cookie.
package forwardauth
