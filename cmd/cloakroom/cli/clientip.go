package cli

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many X-Forwarded-For entries are examined.
const maxForwardedHops = 32

// parseTrustedProxies parses --trusted-proxy values: CIDR prefixes or
// single addresses.
func parseTrustedProxies(values []string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var problems []error
	for _, v := range values {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		problems = append(problems, fmt.Errorf("--trusted-proxy %q: want an address or a CIDR prefix such as 10.0.0.0/8", v))
	}
	return out, problems
}

// clientIPFunc returns the client address to record with sessions and to
// throttle logins by. A request from a trusted proxy is attributed to the
// nearest untrusted address in X-Forwarded-For, read from the right: only
// the entries our own proxies appended can be believed, anything further
// left was written by the client. Without trusted proxies the header is
// ignored.
func clientIPFunc(trusted []netip.Prefix) func(*http.Request) string {
	isTrusted := func(a netip.Addr) bool {
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) string {
		host := r.RemoteAddr
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		peer, err := netip.ParseAddr(host)
		if err != nil || len(trusted) == 0 || !isTrusted(peer) {
			return host
		}
		return forwardedClient(r.Header.Values("X-Forwarded-For"), peer, isTrusted).String()
	}
}

// forwardedClient walks X-Forwarded-For from the right, past trusted hops,
// and returns the first untrusted address. A malformed entry stops the walk
// at the last address known to be real.
func forwardedClient(headers []string, peer netip.Addr, isTrusted func(netip.Addr) bool) netip.Addr {
	client := peer.Unmap()
	hops := 0
	for i := len(headers) - 1; i >= 0; i-- {
		entries := strings.Split(headers[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			if hops++; hops > maxForwardedHops {
				return client
			}
			a, ok := parseForwardedAddr(strings.TrimSpace(entries[j]))
			if !ok {
				return client
			}
			client = a
			if !isTrusted(a) {
				return a
			}
		}
	}
	return client
}

// parseForwardedAddr accepts "1.2.3.4", "1.2.3.4:5678", "2001:db8::1" and
// "[2001:db8::1]:5678".
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
