// Package upstreamjwt mints and verifies the gateway's internal JWT: a
// short-lived (at most 60 s) EdDSA token that tells an upstream who the
// user is. The gateway signs one per proxied request with a [Signer];
// upstreams check it with [Verify] against the key set the gateway serves
// at [Signer.JWKSHandler], so a local process that can reach the upstream
// cannot forge X-Forwarded-User.
//
// The package imports only the standard library, so an upstream written in
// Go can use it without pulling in the gateway.
package upstreamjwt

// Identity is the authenticated user a token speaks for. An Identity with
// an empty User is anonymous and is never signed.
type Identity struct {
	User   string
	Email  string
	Groups []string
	// AMR are the RFC 8176 values of how the user signed in ("pwd",
	// "otp", "hwk", "swk", "user", "pin", "mfa", or a provider's), carried
	// as the "amr" claim; empty when unknown.
	AMR []string
}
