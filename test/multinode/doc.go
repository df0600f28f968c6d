// Package multinode tests cloakroom gateways running as several nodes that
// share one session store (Redis through rueidis with client-side caching,
// PostgreSQL with and without the LISTEN/NOTIFY cache, one SQLite file).
//
// It holds tests only:
//
//   - a session started on one node is honoured by another and, once
//     logged out through a third, refused by all of them, warm caches
//     included;
//   - the revocation window: whether a node with a warm cache still
//     accepts a session after the logout response has arrived, measured
//     over many runs per store, through the gateways
//     (TestRevocationWindow) and at the store layer for every kind of
//     revocation (TestRevokedAtOnceOnEveryNode). The target is that no
//     request starting after the logout response is accepted; stores that
//     promise it (variant.strict) fail the tests on a single such request;
//   - revoking everyone through one node's admin API while every node is
//     asked about a local account's, an OpenID provider's user's
//     (mockoidc), a vault user's and an anonymous session
//     (TestRevokeEveryoneOnEveryNode): no request starting after the admin
//     call's response is accepted, the provider session's sealed tokens
//     end with it, and the records that must outlive it (back-channel
//     logout tombstones) are untouched;
//   - failing closed: while the store is stopped or its connections are
//     cut, no protected request is answered 200 or proxied, and service
//     comes back by itself once the store does, without leaking goroutines.
//
// The tests need Redis and PostgreSQL (see internal/testservers). Set
// CLOAKROOM_MULTINODE_REPORT to a file name to have the measured figures
// written there as Markdown.
package multinode
