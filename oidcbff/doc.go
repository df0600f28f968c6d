// Package oidcbff makes the gateway an OpenID Connect client: the
// Backend-for-Frontend pattern of the IETF "OAuth 2.0 for Browser-Based
// Applications" draft. The browser never sees a provider token; it holds
// the gateway's session cookie only.
//
// A [Client] serves three endpoints under the gateway's auth prefix:
//
//   - GET {auth}/login/{provider}: starts the authorization code flow with
//     PKCE (S256), state and nonce. The pre-login state lives in a sealed,
//     short-lived, HttpOnly __Host- cookie, not in a server session.
//   - GET {auth}/callback/{provider}: checks state, exchanges the code,
//     verifies the ID token (signature, iss, aud, azp, exp, nonce, at_hash
//     and c_hash when present, auth_time against max_age), maps the claims
//     to a user, applies the access rules and starts a cloakroom session.
//   - POST {auth}/backchannel-logout/{provider}: OpenID Connect
//     Back-Channel Logout 1.0; ends the sessions matching the logout
//     token's sid, or every session of its sub, on every node. A
//     tombstone of the logout makes a login still in flight when it came
//     end its session before the browser gets the cookie.
//
// Provider tokens (access, refresh, ID) are sealed with AES-GCM (see
// [Sealer]) and kept in the session store, in a record named by a random
// reference stored in the session's values: they die with the session's
// absolute deadline at the latest, and logout deletes them. [Client.Upstream]
// hands the access token to the proxy for routes that relay it, refreshing
// it shortly before it expires. A refresh happens once per session across
// all gateways sharing the store: a lease taken with the store's versioned
// Commit makes one node spend the refresh token while the others wait for
// its result, so a provider that rotates refresh tokens never sees one used
// twice. A refresh the provider refuses ends the session.
//
// User IDs are "{provider}:{claim}" (the sub by default): local account
// names cannot contain ':', and two providers cannot collide.
//
// Every store access uses records of the ordinary [cloakroom.Store]
// interface, keyed by SHA-256 over more than 32 bytes, so no session cookie
// (a 32-byte token hashed) can ever name one.
package oidcbff
