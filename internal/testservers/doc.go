// Package testservers finds or starts the Redis and PostgreSQL servers the
// tests need: a server named in the environment, the usual local one, or a
// throwaway server started from the system binaries on a loopback port.
// Tests share these servers, so each isolates itself (a key prefix, a
// schema of its own) and never flushes or drops what it did not create.
package testservers
