// Package gateway is the HTTP side of cloakroom's Backend-for-Frontend: the
// server `cloakroom serve` runs in front of a single-page app and its APIs.
//
// The browser only ever holds an opaque, HttpOnly session cookie. The
// gateway logs users in against an [accounts.Service], keeps their sessions
// in a [cloakroom.Manager], serves the SPA (from a folder or an upstream) and
// forwards allowlisted API paths through a [proxy.Proxy], which replaces the
// cookie with trusted identity headers and a short-lived signed JWT. No
// token a script could steal ever reaches the page.
//
// # Public listener
//
// [Gateway.Handler] serves, all behind the session middleware
// ([cloakroom.Manager.Handler]: cross-origin protection, session loading,
// the CSRF layer):
//
//   - {auth}/login, {auth}/logout, {auth}/session: the login page and form,
//     JSON login for fetch clients, logout, and the current session as JSON;
//   - {auth}/sessions and {auth}/account: the user's devices, as JSON and as
//     a server-rendered page, with revocation of one, all other, or all
//     sessions;
//   - /.well-known/jwks.json when a signer is configured;
//   - everything else: an allowlisted API route (session required), or the
//     SPA (session required unless under Config.PublicPaths).
//
// A request without a session gets 401 JSON when it comes from script
// (fetch, XHR) and a 303 redirect to the login page when it is a top-level
// navigation. A session store failure answers 503: a request is never served
// as logged in, nor proxied, when the store cannot say who it belongs to.
//
// Built-in pages carry a strict Content-Security-Policy (no script at all,
// styles from the gateway's own embedded stylesheet), refuse framing, and
// every authenticated page has a logout button. Their POST forms carry the
// session's CSRF token in a hidden field, checked in constant time on top
// of the middleware's Fetch Metadata check.
//
// # Admin listener
//
// [Gateway.AdminHandler] is meant for a loopback listener: health and
// readiness probes, Prometheus metrics, and an admin API (bearer token)
// that lists and revokes sessions per user or for everyone.
//
// The endpoint reference is docs/endpoints.md.
package gateway
