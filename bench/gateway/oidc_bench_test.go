package gatewaybench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/accounts/sqliteaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/internal/testoidc"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

// oidcRig is one gateway on SQLite with a local account's session and a
// session from an OpenID provider (mockoidc, in-process), on two routes to
// the same upstream: /api/ relays the provider's access token, /plain/
// sends the identity headers only.
type oidcRig struct {
	local, oidc, relay *target
	providerCalls      *atomic.Int64 // requests that reached the provider
}

func newOIDCRig(tb testing.TB) *oidcRig {
	tb.Helper()
	ctx := context.Background()
	upstream := serveLoopback(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, upstreamBody)
	}))

	calls := &atomic.Int64{}
	m := testoidc.Start(tb, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			next.ServeHTTP(w, r)
		})
	})

	store, err := sqlitestore.Open(ctx, filepath.Join(tb.TempDir(), "bench.db"), sqlitestore.Config{Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	users, err := sqliteaccounts.New(ctx, store.DB())
	if err != nil {
		tb.Fatal(err)
	}
	sessions, err := cloakroom.New(cloakroom.Config{Store: store, Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	accts := accounts.New(users, accounts.Config{RevokeSessions: sessions.RevokeUser, Throttle: memaccounts.NewThrottle(0), Logger: discardLogger()})
	admission, err := signin.New(signin.Config{Sessions: sessions, Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	if err := accts.Add(ctx, benchUser, benchPassword, []string{"user"}, ""); err != nil {
		tb.Fatal(err)
	}
	var routes []proxy.Route
	for _, prefix := range []string{"/api/", "/plain/"} {
		route, err := proxy.ParseRoute(prefix + "=" + upstream.String())
		if err != nil {
			tb.Fatal(err)
		}
		routes = append(routes, route)
	}
	gwListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	base := "http://" + gwListener.Addr().String()
	keys, err := seal.Generate("bench")
	if err != nil {
		tb.Fatal(err)
	}
	mc := m.Config()
	client, err := oidcbff.New(ctx, oidcbff.Config{
		Providers: []oidcbff.ProviderConfig{{
			Name: "mock", Issuer: mc.Issuer, ClientID: mc.ClientID, ClientSecret: mc.ClientSecret, TokenAuth: "post",
		}},
		Admission: admission, PublicURL: base, Sealer: keys, Logger: discardLogger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := proxy.SetModes(routes, map[string]proxy.Mode{"/api/": client.Relay()}); err != nil {
		tb.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Sessions: sessions, Admission: admission, Accounts: accts, Routes: routes, OIDC: client, Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gw.Close() })
	srv := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(gwListener)
	tb.Cleanup(func() { srv.Close() })

	c := &http.Client{Transport: clientTransport(tb), Timeout: 30 * time.Second}
	local := login(tb, c, base)
	oidcCookie := oidcLogin(tb, c, base)
	r := &oidcRig{
		local:         &target{name: "local", url: base + "/plain/items", cookie: local, client: c},
		oidc:          &target{name: "oidc", url: base + "/plain/items", cookie: oidcCookie, client: c},
		relay:         &target{name: "oidc-relay", url: base + "/api/items", cookie: oidcCookie, client: c},
		providerCalls: calls,
	}
	for _, t := range []*target{r.local, r.oidc, r.relay} {
		if err := t.do(ctx); err != nil {
			tb.Fatalf("first request: %v", err)
		}
	}
	return r
}

// oidcLogin signs in through the provider by hand: the gateway's cookies
// are Secure, which a cookie jar would not send over plain HTTP.
func oidcLogin(tb testing.TB, c *http.Client, base string) string {
	tb.Helper()
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	step := func(target, cookie string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		res, err := noFollow.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	start := step(base+"/auth/login/mock", "")
	var state string
	for _, ck := range start.Cookies() {
		if ck.Name == oidcbff.StateCookieName {
			state = ck.Name + "=" + ck.Value
		}
	}
	authorize := step(start.Header.Get("Location"), "")
	callback, err := url.Parse(authorize.Header.Get("Location"))
	if err != nil || state == "" {
		tb.Fatalf("login at the provider: %v", err)
	}
	return sessionCookie(tb, step(callback.String(), state), "callback")
}

// BenchmarkOIDCSession compares the same proxied GET on a local account's
// session and on a session from an OpenID provider (identity headers only,
// and with the access token relayed), interleaved so machine noise hits all
// alike. The provider is never called on the request path: the token is
// valid, and refresh is the only call the gateway would make.
func BenchmarkOIDCSession(b *testing.B) {
	r := newOIDCRig(b)
	before := r.providerCalls.Load()
	mean := interleave(b, r.local, r.oidc, r.relay)
	if calls := r.providerCalls.Load() - before; calls != 0 {
		b.Fatalf("%d provider calls on the request path", calls)
	}
	if mean == nil {
		return // b.N < 3
	}
	b.ReportMetric(mean[0]/1e3, "local-µs/req")
	b.ReportMetric(mean[1]/1e3, "oidc-µs/req")
	b.ReportMetric(mean[2]/1e3, "relay-µs/req")
	b.ReportMetric(mean[1]/mean[0], "oidc/local")
	b.ReportMetric(mean[2]/mean[0], "relay/local")
}

// TestOIDCSessionNoProviderCall keeps the benchmark honest in ordinary test
// runs: all three requests succeed, and none reaches the provider.
func TestOIDCSessionNoProviderCall(t *testing.T) {
	r := newOIDCRig(t)
	before := r.providerCalls.Load()
	for range 5 {
		for _, target := range []*target{r.local, r.oidc, r.relay} {
			if err := target.do(t.Context()); err != nil {
				t.Fatalf("%s: %v", target.name, err)
			}
		}
	}
	if calls := r.providerCalls.Load() - before; calls != 0 {
		t.Fatalf("%d provider calls for proxied requests", calls)
	}
}
