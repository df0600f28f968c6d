// Package gatewaybench measures authenticated requests through the whole
// cloakroom gateway (SQLite store, session cookie, proxy) against the same
// requests through a plain, tuned httputil.ReverseProxy, to one trivial
// upstream over loopback, in one run.
//
//	go test ./bench/gateway -run "^$" -bench .              # Go benchmark: req/s and the ratio
//	go test ./bench/gateway -v -run TestLoad -loadtime=10s  # bounded-time load runner
//
// The ratio gateway/proxy is the share of a bare reverse proxy's throughput
// the gateway keeps; the target is 0.9 or more.
package gatewaybench
