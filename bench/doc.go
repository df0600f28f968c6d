// Package bench compares, in one run, what one request costs through
// cloakroom's middleware and through its peers: the bare handler, scs with
// its memory store, a gorilla/sessions CookieStore, and JWT verification
// (HS256, ES256, EdDSA) with golang-jwt. Each request reads one session
// value (or one claim) and writes it to the response.
//
// Run `make bench` for a table with ns/op, allocs/op and the cost over the
// bare handler; docs/benchmarks.md records the figures.
package bench
