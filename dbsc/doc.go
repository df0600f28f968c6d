// Package dbsc speaks the protocol of Device Bound Session Credentials
// (DBSC, W3C Web Application Security WG). With DBSC a browser keeps a
// private key on the device and proves possession of it to refresh a
// short-lived cookie, so a cookie copied off the machine stops working
// within that cookie's lifetime.
//
// This package holds the protocol layer, standard library only: it
// verifies the proofs a browser sends (VerifyRegistration, VerifyRefresh),
// reads and writes the Secure-Session-* headers as RFC 8941 structured
// fields, and writes the session instructions JSON. It does not issue or
// remember challenges, store keys, or set bound cookies: that is the
// binder's job (the other files of this package), and checking that a
// proof's challenge was issued, is unused and fresh (replay) is the
// caller's.
//
// # Proofs
//
// A proof is a compact JWS with typ "dbsc+jwt", alg ES256 (P-256, the
// signature as r||s) or RS256 (a 2048- to 8192-bit modulus, public exponent
// 65537), the challenge in jti and an optional authorization claim. A
// registration proof carries its public key as a jwk in the JWT header (or
// in the payload, as the specification's example does); a refresh proof is
// checked against the stored key, and one carrying any other key is
// refused. Anything else is refused: alg none, HS*, PS*, other curves, an
// alg that does not match the key, a crit header, a repeated JSON key,
// non-canonical base64url, a proof over MaxProofSize or a jwk over
// MaxJWKSize. Verification takes time linear in the input.
//
// # Headers
//
// The server writes Secure-Session-Registration (Registration.Header) and
// Secure-Session-Challenge (ChallengeHeader) as the specification has them,
// which Chromium 156 reads. The parsers are strict RFC 8941 readers with a
// MaxHeaderSize bound, failing with errors that wrap ErrMalformed; for the
// two request headers they also take the raw forms Chromium 156 sends
// (the JWT and the session identifier unquoted). Challenges and session
// identifiers should be base64url, which every form carries unchanged.
//
// # Interoperability vectors
//
// The public DBSC vectors of CloudNua/dbsc-server (testdata/vectors) all
// pass. Their failure classes map to ours: bad-typ to ErrMalformed,
// alg-not-allowed to ErrAlgorithm, jwk-missing, alg-key-mismatch and
// jwk-forbidden to ErrKey, bad-signature to ErrSignature, a refused header
// to ErrMalformed; challenge-mismatch and iat-out-of-window are the
// caller's checks on Proof.Challenge and Proof.IssuedAt. One deliberate
// difference: a refresh proof repeating the stored key is accepted, where
// they refuse any jwk on refresh.
//
// # Binding sessions
//
// A [Binder] does the server's part for sessions of a cloakroom.Manager.
// [Binder.Offer], called after a sign-in (package signin calls it for
// every way in), stores a single-use registration challenge bound to the
// new session for Config.RegistrationWindow and offers it in the
// sign-in's answer only. The registration endpoint verifies the proof,
// spends the challenge (a compare-and-set on an auxiliary record, so a
// racing copy loses on any node), and stores the key among the session's
// values (cloakroom.BindingValue): written with the session's
// compare-and-set, it survives renewals, ends with the session, and is
// read with it, so [Binder.Check], the manager's Config.Binding hook,
// costs no store read. Check asks every request of a bound session for a
// bound cookie: a MAC with Config.Key over the session's handle and an
// expiry Config.CookieLifetime ahead, which only a refresh signed by the
// device key renews. A copied cookie jar thus stops working when its
// bound cookie expires; the session is not ended, and its browser goes on.
// Refresh challenges are single use, one auxiliary record each, so tabs
// refreshing at once each get their own; how many a session (and all of
// them together) may ask for is bounded, so a copied cookie jar cannot
// make the store write without end. Package dbsctest is a client that
// speaks the protocol, for tests.
package dbsc
