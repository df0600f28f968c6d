// Package forwardauthbench measures forward-auth decisions behind a real
// nginx `auth_request`: cloakroom (`cloakroom serve`, sessions on Redis
// with its client-side cache, and on its embedded SQLite default) against
// oauth2-proxy's /oauth2/auth (its cookie session store, the default, and
// its Redis session store), each store against each, with the same
// upstream app and the same nginx configuration shape, in one run, with
// two references: nginx alone, and nginx asking a bare Go net/http server
// that allows every request (the floor of any Go auth service). Each
// auth service runs as its own process, so its CPU time per decision is
// read from /proc/<pid>/stat; throughput and p50/p99 latency are measured
// at the client, with the targets interleaved round by round so machine
// noise hits all alike.
//
//	make bench-forward-auth
//	bash bench/forwardauth/build-oauth2-proxy.sh   # prints the peer's binary
//	go test ./bench/forwardauth -v -count=1 -run TestForwardAuthPeers \
//	    -fwd.requests=30000 -fwd.oauth2-proxy=PATH
//
// Without -fwd.requests the test is skipped (it is not part of make
// test); without -fwd.oauth2-proxy it measures cloakroom and nginx alone.
package forwardauthbench
