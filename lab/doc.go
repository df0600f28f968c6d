// Package lab replays, in a real browser, the attack cloakroom exists to
// stop: a stored cross-site scripting payload steals the admin's session
// credential and the attacker uses it elsewhere, even after the admin has
// signed out.
//
// [Start] runs four servers on loopback addresses:
//
//   - the jwt app, http://localhost:PORT: the DELIBERATELY VULNERABLE
//     guestbook (package lab/guestbook) with a JWT kept in localStorage and
//     a sign-out that only deletes it there;
//   - the cloakroom app, http://localhost:PORT: the same page and API behind
//     the cloakroom gateway (package gateway), which keeps the session on
//     the server and gives the browser only an HttpOnly
//     __Host-Http-session cookie; optionally with a strict
//     Content-Security-Policy ([Options.CSP]);
//   - the vault app, http://localhost:PORT: the jwt app, its API and its
//     page unchanged, behind the gateway with its /api/ route in vault mode
//     (package vault): the app's own login answer is captured, the JWT
//     kept sealed in the session, and the page stores only a placeholder
//     that grants nothing without the HttpOnly cookie;
//   - the attacker, http://127.0.0.1:PORT, another site as far as the
//     browser is concerned (package lab/attacker): it serves the payload,
//     collects and replays what it steals, and forges cross-site requests.
//
// The attack chain: (1) a guest posts a comment carrying the payload
// ([Lab.Comment]); (2) an admin signs in; (3) the server issues the session
// credential; (4) the admin opens the page with the comment; (5) the
// script is served; (6) it runs in the admin's browser, takes what it can
// and sends it to the attacker; (7) the attacker uses it to act as the
// admin. In the jwt app step 7 works, also after the admin signs out.
// Behind cloakroom step 6 finds no credential, the forged requests are
// refused, and signing out ends the session on the server. What the
// payload can still do is act through the admin's open page while it is
// open, unless the CSP stops it from running at all; docs/threat-model.md
// states these limits with the lab's results.
//
// One more attack needs no script in the page: malware on the admin's
// machine copies the browser's cookie store and replays it elsewhere.
// Behind cloakroom the copy works until the admin signs out; with
// [Options.DBSC] the cloakroom app binds sessions to a key the browser
// keeps (Device Bound Session Credentials) and the copy stops working
// once its short-lived bound cookie expires. Browsers bind sessions on
// HTTPS only, so that app is then served over HTTPS with a throwaway
// certificate ([Lab.SPKIPin]).
//
// The apps render comments unsafely on purpose. Every page says so in a
// banner, and Start refuses any address that is not loopback.
package lab
