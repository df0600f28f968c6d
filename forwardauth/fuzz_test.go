package forwardauth_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/memstore"
)

// FuzzDecision sends decisions with hostile forwarded headers through
// every adapter: none panics, none sets a cookie, the answer is one of the
// decision's documented statuses, and only a 200 vouches for a user (there
// is no session here, so none names one). A 200 carries every identity
// header once, all but the app's cookies empty, whatever identity the
// client claimed in its own copies (the origin's value is sent as each).
func FuzzDecision(f *testing.F) {
	store := memstore.New(memstore.Config{})
	f.Cleanup(func() { store.Close() })
	m, err := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h, err := forwardauth.New(forwardauth.Config{
		Sessions: m,
		Proxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Rules:    []forwardauth.Rule{{Host: "app.example.com"}, {Host: "app.example.com", Prefix: "/public/", Public: true}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("nginx", "GET", "https://app.example.com/public/x?y=1", "", "", "")
	f.Add("nginx", "POST", "https://app.example.com/a/../public/", "", "", "https://evil.example")
	f.Add("caddy", "GET", "/public/%2e%2e/admin", "app.example.com", "https", "")
	f.Add("traefik", "DELETE", "//public//x", "app.example.com:443", "http", "null")
	f.Add("envoy/public/a", "GET", "", "app.example.com", "", "")
	f.Add("envoy", "PUT", "", "APP.example.com.", "", "")
	allowed := map[int]bool{200: true, 302: true, 400: true, 401: true, 403: true, 404: true}
	identityHeaders := []string{forwardauth.HeaderUser, forwardauth.HeaderEmail, forwardauth.HeaderGroups,
		forwardauth.HeaderAMR, forwardauth.HeaderAuthorization, forwardauth.HeaderCookie}
	f.Fuzz(func(t *testing.T, adapter, method, uri, host, proto, origin string) {
		if len(adapter) > 64 || strings.ContainsAny(adapter, "?#%") || strings.IndexFunc(adapter, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0 {
			return // not a path a proxy could ask at
		}
		r := httptest.NewRequest("GET", "http://127.0.0.1/auth/forward/"+adapter, nil)
		if strings.HasPrefix(adapter, "envoy") && method != "" && !strings.ContainsAny(method, " \t\r\n") {
			r.Method = method
		}
		r.RemoteAddr = "127.0.0.1:40000"
		set := func(name, value string) {
			if value != "" && !strings.ContainsAny(value, "\r\n\x00") {
				r.Header.Set(name, value)
			}
		}
		set("X-Original-Method", method)
		set("X-Original-URL", uri)
		set("X-Forwarded-Method", method)
		set("X-Forwarded-Uri", uri)
		set("X-Forwarded-Host", host)
		set("X-Forwarded-Proto", proto)
		set("Origin", origin)
		for _, name := range identityHeaders[:5] {
			set(name, origin) // a client's claim: never echoed
		}
		if host != "" && !strings.ContainsAny(host, " \t\r\n/") {
			r.Host = host
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if !allowed[w.Code] {
			t.Fatalf("status %d for %s %s %q on %q", w.Code, adapter, method, uri, host)
		}
		if len(w.Header().Values("Set-Cookie")) > 0 {
			t.Fatalf("a decision set a cookie: %q", w.Header().Values("Set-Cookie"))
		}
		if user := w.Header().Get(forwardauth.HeaderUser); user != "" {
			t.Fatalf("a decision without a session vouched for %q", user)
		}
		if w.Code == http.StatusOK {
			for _, name := range identityHeaders {
				if v := w.Header()[name]; len(v) != 1 || name != forwardauth.HeaderCookie && v[0] != "" {
					t.Fatalf("allowed without a session: %s = %q; want one empty value", name, v)
				}
			}
		}
		if w.Code == http.StatusFound {
			if loc := w.Header().Get("Location"); strings.Contains(loc, "evil") && !strings.HasPrefix(loc, "/") {
				t.Fatalf("a redirect off the configured hosts: %q", loc)
			}
		}
	})
}
