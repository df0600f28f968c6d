// Package conduit is a small JWT app shaped like the RealWorld "Conduit"
// example (https://realworld-docs.netlify.app): a JSON API under /api and
// a single-page app, for testing the vault (package vault) against the
// kind of app it is meant to sit in front of. It listens on nothing by
// itself; command lab/conduit/cmd/conduit serves the API on loopback.
//
// It is deliberately shaped like real apps, awkward habits included:
//
//   - the token is in the JSON body: login, sign-up and settings answer
//     {"user":{...,"token":"<jwt>"}}, an HS256 JWT with the claims id (a
//     JSON number), username, iat, exp and a random jti;
//   - the RealWorld scheme, "Authorization: Token <jwt>" (not Bearer);
//   - POST /api/users, without the trailing slash, answers 307 to
//     /api/users/, as routers that redirect trailing slashes do; the
//     browser repeats the POST there;
//   - the profile echo: GET /api/user answers the very token the request
//     carried, and the page stores what it gets back;
//   - storage-only logout: the page's logout removes the token from
//     localStorage and tells no one, so a copy of the token keeps working
//     until it expires;
//   - public reads take an optional token (articles then say whether the
//     user favorited them) but, like express-jwt, answer 401 to a bad one;
//   - no Cache-Control on answers carrying tokens.
//
// API ([App.API]; errors are {"errors":{"body":["..."]}}: 401 for a
// missing, malformed or expired token, 403 for a user who is not the
// author, 404 for an unknown article or route, 413 for a body over
// [MaxBodyBytes], 415 for a body that is not JSON by its Content-Type, 422
// for bad JSON, a failed validation or a wrong password):
//
//	POST   /api/users/login                 {"user":{"email","password"}} → 200 user
//	POST   /api/users                       → 307, Location: /api/users/
//	POST   /api/users/                      {"user":{"username","email","password"}} → 201 user
//	GET    /api/user                        (token) → 200 user, echoing the request's token
//	PUT    /api/user                        (token) {"user":{"bio","image","email","username","password"}} → 200 user, fresh token
//	GET    /api/articles                    (optional token) ?limit&offset&tag&author&favorited → {"articles","articlesCount"}, newest first
//	POST   /api/articles                    (token) {"article":{"title","description","body","tagList"}} → 201 article
//	GET    /api/articles/{slug}             (optional token) → 200 article
//	DELETE /api/articles/{slug}             (token, author only) → 204
//	POST   /api/articles/{slug}/favorite    (token) → 200 article
//	DELETE /api/articles/{slug}/favorite    (token) → 200 article
//
// [App.Seen] and [App.Requests] tell a test which requests reached the API
// with a valid token, so it can check that the vault attached the token,
// or did not. Nothing in the package logs, and its request log holds no
// token material.
//
// [SPA] is the page (index.html, app.js, app.css; no build step, no
// inline script or style), which calls /api on its own origin; [WriteSPA]
// copies it into a folder for the gateway's --static. Its elements: the
// login form #email, #password, #login; the sign-up form #reg-username,
// #reg-email, #reg-password, #register; when signed in #who (the
// username), #logout, the new-article form #title, #body, #publish, and
// the settings form #bio, #save-bio; always #articles (one li per article,
// its title as text, data-slug and data-favorited attributes). #status
// says what happened last: "loading", "signed-in:<username>",
// "signed-out", "published:<title>", "saved", or "error:<HTTP status>"
// ("error:network" when no answer came).
package conduit
