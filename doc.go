// Package cloakroom keeps web sessions on the server, where a script
// injected into the page cannot reach them, and hands the browser only an
// opaque ticket in an HttpOnly cookie.
//
// A single-page app that keeps a JSON Web Token in localStorage loses it to
// the first stored XSS, and "logging out" by deleting it in the browser does
// not stop a copy from working until it expires. With cloakroom the token is
// 256 random bits in a __Host-Http- cookie page script can neither read nor
// write, only its SHA-256 is stored, and logout deletes the session on the
// server.
//
// # Use
//
// Create a [Manager] over a [Store] and wrap your handler with
// [Manager.Handler]. Handlers get the request's [Session] with
// [Manager.Session]:
//
//	m, err := cloakroom.New(cloakroom.Config{Store: memstore.New(memstore.Config{})})
//	...
//	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
//		// check the password first
//		if err := m.Session(r).Login(r.Context(), "alice", cloakroom.LoginOptions{}); err != nil { ... }
//	})
//	http.ListenAndServe(addr, m.Handler(mux))
//
// # What the middleware does
//
//   - Refuses cross-site unsafe requests with net/http's
//     CrossOriginProtection and, for cookie requests that carry neither
//     Sec-Fetch-Site nor Origin, requires the session's synchronizer token
//     in the X-CSRF-Token header ([Session.CSRFToken]); a request that
//     sends a wrong token is refused whatever its Fetch Metadata says.
//   - Reads the token from the cookie only (never a URL, form field or other
//     header), checks its form before any store lookup, and loads the
//     session.
//   - Enforces the idle and absolute timeouts with its own clock, and writes
//     the last-seen time back at most once per Config.TouchInterval.
//   - Saves value changes before the response's first byte with optimistic
//     versioning: concurrent requests that change different keys keep both
//     changes; for one key the last save wins.
//   - Adds Cookie to every response's Vary (keeping what the handler set
//     there) and sets Cache-Control: no-store on responses that carry or
//     set a session.
//   - Fails closed: a store error means "not logged in" for the request,
//     [Session.Err] says why, and changes that cannot be saved turn the
//     response into a 503 rather than a false success.
//
// # Lifecycle
//
// [Session.Login] always issues a new token and deletes the previous
// session, so a planted token is worthless. [Session.Renew] does the same
// for a privilege change and keeps the values; it never extends the
// absolute lifetime. Every rotation is one store operation ([Rotator]):
// the old session must still be live and its user's generation unchanged,
// so a request parked mid-way cannot bring back a session that was logged
// out or revoked meanwhile. A login can pin the user's generation before
// the password check ([Manager.Pin]), so an account disabled or changed
// during the check gets no session. [Session.Logout] deletes the session in the store,
// expires the cookie and sends Clear-Site-Data. [Manager.RevokeUser] bumps
// the user's generation, which ends every session of that user at once on
// every node, cached copies included; [Session.RevokeOthers] does that and
// keeps the current session under a new token. [Session.Devices] and
// [Manager.Devices] list a user's sessions by public handle.
//
// A session is more than its requests: [Session.Watch] gives streaming
// responses and upgraded connections (SSE, WebSocket) a context that ends
// with the session, on every node, through the store's [EndNotifier] and a
// periodic re-check. [Session.MarkPassive] keeps a status poll from
// counting as activity, so polling cannot keep an idle session alive.
//
// # Stores
//
// A [Store] keeps [Record] values keyed by the token's SHA-256. Packages
// memstore, sqlitestore, redisstore and pgstore implement it, and package
// storetest is the conformance suite they all pass.
//
// This package imports only the standard library.
package cloakroom
