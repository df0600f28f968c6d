// Package vault puts an existing JWT app behind the gateway without a
// backend change, and keeps the app's token out of the browser.
//
// Such an app has its own users and its own login endpoint, which answers
// with a JWT in the JSON body; its SPA keeps the token in localStorage and
// sends it in Authorization. On a vault route (a proxy route named in
// [Config.Routes]):
//
//   - Anonymous calls pass: login, register and public reads reach the
//     backend without a cloakroom session. The backend stays the judge.
//   - Capture: on a 2xx answer to a configured request ([Capture]), the
//     token is taken out of the body, a real cloakroom session is started
//     for the user named by a claim of the token (read, not verified: it
//     comes from our own upstream), under the user ID "{prefix}:{claim}",
//     never a local account's or a provider's; the token is kept in the
//     session, sealed with AES-256-GCM ([Sealer]) and bound to it. A
//     browser signed in as that user when the call started has the login
//     pinned ([cloakroom.Manager.Pin]): a revocation of the user while the
//     app checked the login makes the capture fail with 401.
//   - Replace, never leak: the browser gets the body with the token
//     replaced by a placeholder (or the field dropped). Every answer of the
//     route is also checked for the vaulted token and for JWT-shaped
//     strings, on what the browser can read rather than on its labels: a
//     capture answer is read whole and must be JSON; so is a body that is
//     JSON by its type or its first byte (up to Route.MaxBody); any other
//     body is masked as it streams, event by event. Headers and trailers
//     are checked decoded (percent-encoding, JSON escapes, base64), and
//     gzip and deflate undone. Any it finds is replaced or removed and
//     counted (cloakroom_vault_leaks_caught_total). What it cannot check
//     (another encoding or charset, two Content-Type values, a partial
//     answer) is refused with 502 (refused_response); Range is never sent
//     upstream and 1xx informational answers are dropped.
//   - Refresh: a token at a configured path of any 2xx answer to a call
//     that carried the vaulted token replaces it, if it names the same user.
//   - Drop: an upstream 401 on a call that carried the vaulted token ends
//     the session; the 401 reaches the SPA, which shows its login.
//   - Attach: on a call with a live session, the client's own header
//     (whatever the SPA put there) is removed and the vaulted token sent in
//     the configured header and scheme. By default only when the call also
//     carries that session's placeholder, so an SPA whose logout clears
//     only its storage really logs out; Route.AttachOnCookie attaches on
//     the cookie alone. Query parameters and form fields through which the
//     backend would also take a token (access_token, ...) are removed from
//     every request.
//   - Logout: the gateway's own logout ends the session and so forgets the
//     token; so do the app's logout requests ([Route.Logout]). A second
//     capture in the same browser replaces the session.
//
// The vault lives in the session's values, so every store carries it
// between nodes; audit log lines name users, routes and paths, never token
// material.
package vault
