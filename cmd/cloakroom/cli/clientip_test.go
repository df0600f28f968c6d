package cli

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, problems := parseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	clientIP := clientIPFunc(trusted)
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"203.0.113.9:1234", nil, "203.0.113.9"},
		{"203.0.113.9:1234", []string{"1.1.1.1"}, "203.0.113.9"},                             // untrusted peer: header ignored
		{"10.0.0.5:1234", []string{"198.51.100.7"}, "198.51.100.7"},                          // one trusted hop
		{"10.0.0.5:1234", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},                 // client-written entry on the left ignored
		{"10.0.0.5:1234", []string{"6.6.6.6", "198.51.100.7, 10.1.1.1"}, "198.51.100.7"},     // two header lines, two hops
		{"10.0.0.5:1234", []string{"198.51.100.7:5555"}, "198.51.100.7"},                     // with port
		{"10.0.0.5:1234", []string{"[2001:db9::1]:80"}, "2001:db9::1"},                       // bracketed v6
		{"10.0.0.5:1234", []string{"garbage"}, "10.0.0.5"},                                   // malformed: stop at the proxy
		{"10.0.0.5:1234", []string{"198.51.100.7, garbage"}, "10.0.0.5"},                     // malformed rightmost
		{"10.0.0.5:1234", []string{"10.2.2.2, 10.3.3.3"}, "10.2.2.2"},                        // all trusted: leftmost
		{"10.0.0.5:1234", nil, "10.0.0.5"},                                                   // no header
		{"[2001:db8::5]:443", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},               // mapped v4
		{"192.0.2.1:9", []string{strings.Repeat("10.0.0.1,", 100) + "10.0.0.2"}, "10.0.0.1"}, // bounded walk
	} {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientIP(r); got != tc.want {
			t.Errorf("%s %q: got %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, problems := parseTrustedProxies([]string{"10.0.0.0/33", "proxy.internal"}); len(problems) != 2 {
		t.Errorf("bad prefixes accepted: %v", problems)
	}
	// Without trusted proxies the header is never read.
	r := &http.Request{RemoteAddr: "127.0.0.1:1", Header: http.Header{"X-Forwarded-For": {"1.2.3.4"}}}
	if got := clientIPFunc(nil)(r); got != "127.0.0.1" {
		t.Errorf("no trusted proxies: got %s", got)
	}
}

func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4, 10.0.0.1", "[::1]:80", "", ",,,", "fe80::1%eth0", "10.0.0.1:99999"} {
		f.Add(s)
	}
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	clientIP := clientIPFunc(trusted)
	f.Fuzz(func(t *testing.T, xff string) {
		r := &http.Request{RemoteAddr: "10.9.9.9:1", Header: http.Header{"X-Forwarded-For": {xff}}}
		got := clientIP(r)
		a, err := netip.ParseAddr(got)
		if err != nil || a.Zone() != "" {
			t.Fatalf("X-Forwarded-For %q gave %q, not a plain address", xff, got)
		}
		// The answer is the proxy or an address listed in the header.
		if got == "10.9.9.9" {
			return
		}
		for entry := range strings.SplitSeq(xff, ",") {
			if e, ok := parseForwardedAddr(strings.TrimSpace(entry)); ok && e == a {
				return
			}
		}
		t.Fatalf("X-Forwarded-For %q gave %q, which it does not list", xff, got)
	})
}
