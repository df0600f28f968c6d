package forwardauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloakroom/cloakroom/forwardauth"
)

// A request-target never holds '#' (RFC 9112 3.2), yet nginx accepts one
// and passes it on: $uri, which its locations match, ends at the '#',
// while $request_uri, which the decision reads and proxy_pass without a
// URI sends to the app, keeps the rest. A decision that judged the part
// before the '#' would vouch for "/public/x" while the app is asked for
// "/public/x#/../admin", which an app that cleans paths serves as /admin.
// Every adapter refuses such a target instead of guessing how the app
// reads it.
func TestFragmentInTheForwardedTargetRefused(t *testing.T) {
	h := publicPrefixHandler(t)
	decide := func(adapter string, header map[string]string) int {
		r := httptest.NewRequest("GET", "/auth/forward/"+adapter, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		for k, v := range header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for _, target := range []string{"/public/x#/../admin", "/public/x?a=1#/../../admin", "/public/#"} {
		if got := decide("nginx", map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://app.example.com" + target}); got != http.StatusBadRequest {
			t.Errorf("nginx, %q: %d; want 400", target, got)
		}
		for _, adapter := range []string{"caddy", "traefik"} {
			got := decide(adapter, map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": target})
			if got != http.StatusBadRequest {
				t.Errorf("%s, %q: %d; want 400", adapter, target, got)
			}
		}
	}
	// Envoy's original path is the decision's own, after the prefix.
	for _, target := range []string{"/public/x#/../admin", "/public/x?a=1#/../../admin"} {
		r := httptest.NewRequest("GET", "/auth/forward/envoy"+target, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Host = "app.example.com"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("envoy, %q: %d; want 400", target, w.Code)
		}
	}
	// The same public paths without the '#' are still allowed.
	if got := decide("nginx", map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://app.example.com/public/x?a=1"}); got != http.StatusOK {
		t.Errorf("nginx, /public/x?a=1: %d; want 200", got)
	}
	if got := decide("caddy", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": "/public/x?a=1"}); got != http.StatusOK {
		t.Errorf("caddy, /public/x?a=1: %d; want 200", got)
	}
}

// Paths an upstream reads differently from the decision are refused as
// the gateway's own proxy refuses them (one rule, httpx.CleanPath):
// Tomcat reads "..;" as "..", and frameworks that normalise Unicode (NFKC)
// read a fullwidth full stop as ".". Judged as written, each of these is
// under the public prefix; read by such an app, it is /admin.
func TestPathsAnUpstreamReadsDifferentlyRefused(t *testing.T) {
	h := publicPrefixHandler(t)
	for _, target := range []string{
		"/public/..;/admin", "/public/.;/x", "/public/..;jsessionid=1/admin",
		"/public/%EF%BC%8E%EF%BC%8E/admin", // U+FF0E twice
		"/public/%C0%AE%C0%AE/admin",       // overlong UTF-8 dots
	} {
		for _, adapter := range []string{"nginx", "caddy"} {
			r := httptest.NewRequest("GET", "/auth/forward/"+adapter, nil)
			r.RemoteAddr = "127.0.0.1:40000"
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Original-URL", "https://app.example.com"+target)
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Proto", "https")
			r.Header.Set("X-Forwarded-Host", "app.example.com")
			r.Header.Set("X-Forwarded-Uri", target)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusBadRequest {
				t.Errorf("%s, %q: %d; want 400 bad_path", adapter, target, w.Code)
			}
		}
	}
}

// publicPrefixHandler is forward auth on memstore for app.example.com,
// where /public/ needs no session and every other path does.
func publicPrefixHandler(t *testing.T) *forwardauth.Handler {
	t.Helper()
	h, _ := decisionHandlerFor(t, forwardauth.Rule{Host: "app.example.com"}, forwardauth.Rule{Host: "app.example.com", Prefix: "/public/", Public: true})
	return h
}
