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
package dbsc
