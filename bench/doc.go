// Package bench compares, in one run, what one request costs through
// cloakroom's middleware on each of its stores (memstore; SQLite with its
// cache and without; Redis with its client-side cache and without;
// PostgreSQL with its NOTIFY cache and without) and through its peers: the
// bare handler, scs with its memory store, a gorilla/sessions CookieStore,
// and JWT verification (HS256, ES256, EdDSA) with golang-jwt. Each request
// reads one session value (or one claim) and writes it to the response. A
// raw SQLite point SELECT (the session row by key, through database/sql)
// is the floor an uncached SQLite check is measured against.
//
// Run `make bench` for a table with ns/op, allocs/op and the cost over the
// bare handler, and the ratios the project sets targets for;
// docs/benchmarks.md records the figures.
package bench
