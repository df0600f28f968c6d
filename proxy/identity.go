package proxy

import "github.com/cloakroom/cloakroom/upstreamjwt"

// Identity is the authenticated user on whose behalf a request is proxied
// (Call.Identity); an Identity with an empty User counts as anonymous. It
// is the identity the internal JWT carries (package upstreamjwt).
type Identity = upstreamjwt.Identity
