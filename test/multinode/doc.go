// Package multinode tests cloakroom gateways running as several nodes that
// share one session store (Redis through rueidis with client-side caching,
// or PostgreSQL with and without the LISTEN/NOTIFY cache).
//
// It holds tests only:
//
//   - a session started on one node is honoured by another and, once
//     logged out through a third, refused by all of them, warm caches
//     included;
//   - the revocation window: how long a node with a warm cache still
//     accepts a session after the logout response has arrived, measured
//     over many runs per store, and held to the target (no request that
//     starts after the logout response is accepted; where invalidation is
//     asynchronous, under 10 ms at p99);
//   - failing closed: while the store is stopped or its connections are
//     cut, no protected request is answered 200 or proxied, and service
//     comes back by itself once the store does, without leaking goroutines.
//
// The tests need Redis and PostgreSQL (see internal/testservers). Set
// CLOAKROOM_MULTINODE_REPORT to a file name to have the measured figures
// written there as Markdown.
package multinode
