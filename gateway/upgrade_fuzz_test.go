package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/signin"
)

// FuzzUpgradeOrigin checks the WebSocket origin rule on arbitrary headers:
// a handshake passes only with Sec-Fetch-Site: same-origin, a trusted
// Origin, or, without Fetch Metadata, an Origin equal to the request's own
// (https; http only on a plain-HTTP listener).
func FuzzUpgradeOrigin(f *testing.F) {
	const trusted = "https://sso.example.com"
	store := memstore.New(memstore.Config{})
	f.Cleanup(func() { store.Close() })
	m, err := cloakroom.New(cloakroom.Config{Store: store, TrustedOrigins: []string{trusted}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close() })
	gateways := map[bool]*gateway.Gateway{}
	for _, tls := range []bool{false, true} {
		admission, err := signin.New(signin.Config{Sessions: m})
		if err != nil {
			f.Fatal(err)
		}
		gw, err := gateway.New(gateway.Config{Sessions: m, Admission: admission, Accounts: accounts.New(memaccounts.New(), accounts.Config{RevokeSessions: accounts.NoSessions, Throttle: memaccounts.NewThrottle(0)}), TLS: tls})
		if err != nil {
			f.Fatal(err)
		}
		gateways[tls] = gw
	}
	f.Add("app.example.com", "https://app.example.com", "", true)
	f.Add("app.example.com", "http://app.example.com", "", false)
	f.Add("app.example.com", "https://evil.example", "cross-site", true)
	f.Add("app.example.com", "https://sub.app.example.com", "same-site", true)
	f.Add("app.example.com", trusted, "cross-site", true)
	f.Add("app.example.com", "null", "", false)
	f.Add("app.example.com:8443", "https://app.example.com:8443", "none", true)
	f.Fuzz(func(t *testing.T, host, origin, site string, tls bool) {
		r := httptest.NewRequest(http.MethodGet, "http://example.test/api/ws", nil)
		r.Host = host
		r.Header.Set("Upgrade", "websocket")
		r.Header["Origin"] = []string{origin}
		if site != "" {
			r.Header["Sec-Fetch-Site"] = []string{site}
		}
		got := gateways[tls].UpgradeFromOwnOrigin(r)
		want := origin == trusted || site == "same-origin" ||
			site == "" && (origin == "https://"+host || !tls && origin == "http://"+host)
		if got != want {
			t.Fatalf("host %q, Origin %q, Sec-Fetch-Site %q, TLS %v: passed %v, want %v", host, origin, site, tls, got, want)
		}
	})
}
