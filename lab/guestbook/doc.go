// Package guestbook is the lab's DELIBERATELY VULNERABLE guestbook: a
// single-page app and a JSON API where users sign in, post comments and,
// as admins, delete any comment and list the users.
//
// The page renders comments with innerHTML, on purpose, so that a comment
// can carry a stored cross-site scripting payload. That is the only
// deliberate flaw; everything else follows the project's rules. Never serve
// it anywhere but on a loopback address.
//
// The same page and API run in two modes:
//
//   - [ModeJWT]: POST /api/login returns a signed JWT (HS256, one hour).
//     The page keeps it in localStorage and sends it as
//     "Authorization: Bearer"; logging out only deletes it from
//     localStorage, as many single-page apps do. Use [App.Handler], which
//     serves the page and the API on one origin.
//   - [ModeCloakroom]: the API sits behind the cloakroom gateway and trusts
//     the identity headers the gateway sets (X-Forwarded-User,
//     X-Forwarded-Groups), after an optional check of the gateway's signed
//     assertion ([Config.CheckGateway]). The page never holds a token: it
//     signs in and out through the gateway's /auth endpoints and keeps only
//     the CSRF token, in memory. Mount [App.API] as the gateway's /api/
//     upstream and serve the files of [WriteStatic] as its static folder.
//
// The page learns its mode from /config.json, a static file, so it needs
// no inline script and runs under a strict Content-Security-Policy.
//
// API (every route but /api/login needs a signed-in user):
//
//	POST /api/login                  {"username","password"} → {"token",...} (ModeJWT only)
//	GET  /api/me                     {"user","roles","admin"}
//	GET  /api/comments               all comments, oldest first
//	POST /api/comments               {"text": "..."} adds a comment
//	POST /api/comments/{id}/delete   removes a comment (admins only)
//	GET  /api/admin/users            the user directory (admins only)
package guestbook
