// Package proxy is the gateway's reverse proxy to allowlisted upstreams.
//
// The gateway keeps the user's session server-side (see the cloakroom
// package); the browser only holds an opaque HttpOnly cookie. When a request
// for an API path arrives, [Proxy] forwards it to the upstream whose route
// prefix is the longest match and tells the upstream who the user is:
//
//   - X-Forwarded-User, X-Forwarded-Email, X-Forwarded-Groups and
//     X-Forwarded-Amr (how the user signed in, RFC 8176), taken from
//     the [Identity] the gateway's authentication layer passes in a [Call]
//     to [Proxy.Serve];
//   - optionally Authorization: Bearer <JWT>, a short-lived (at most 60 s)
//     EdDSA token minted per request by an upstreamjwt.Signer, which
//     upstreams check with upstreamjwt.Verify against the key set served by
//     the signer's JWKSHandler.
//
// A route may have a [Mode] beyond this, the one place its kind is decided:
// the token vault attaches an app's own token it keeps for the user, and
// OpenID token relay sends the user's access token instead of the JWT.
//
// Everything a client could use to impersonate someone is removed first:
// client-sent identity headers (including underscore spellings such as
// X_Forwarded_User), Authorization, Forwarded/X-Forwarded-* and X-Real-IP.
// The session cookie itself never reaches an upstream, and upstreams cannot
// set or clear it.
//
// Only paths that are already clean are proxied: "..", "." and empty
// segments, encoded slashes, backslashes, control characters, double-encoded
// dots and Tomcat-style "..;" segments are refused with 400 before routing,
// so no request can escape its route prefix on any upstream's path
// normalisation. Paths that match no route get 404 and are never proxied.
package proxy
