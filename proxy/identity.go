package proxy

import (
	"context"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// Identity is the authenticated user on whose behalf a request is proxied.
// The gateway's authentication layer attaches it with [WithIdentity]; an
// Identity with an empty User counts as anonymous. It is the identity the
// internal JWT carries (package upstreamjwt).
type Identity = upstreamjwt.Identity

// identityKey is the unexported context key, so only this package's
// functions can attach or read an Identity.
type identityKey struct{}

// WithIdentity returns a copy of ctx that carries id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the Identity attached by [WithIdentity], if any.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// accessTokenKey is the context key of a relayed access token.
type accessTokenKey struct{}

// WithAccessToken returns a copy of ctx that makes the proxy send token as
// "Authorization: Bearer" instead of the internal JWT: token relay of the
// user's own access token from an identity provider. The identity headers
// are sent as usual.
func WithAccessToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, accessTokenKey{}, token)
}

// AccessTokenFrom returns the token attached by [WithAccessToken], if any.
func AccessTokenFrom(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(accessTokenKey{}).(string)
	return t, ok && t != ""
}
