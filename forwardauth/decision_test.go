package forwardauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/cloakroom/cloakroom/signin"
)

// nginxAsk sends the decision request nginx's documented config sends for
// method and uri on host, with the browser's headers as name, value pairs.
func nginxAsk(c *client, method, host, uri string, headers ...string) response {
	c.t.Helper()
	return c.do("GET", "/auth/forward/nginx", "", append([]string{
		"X-Original-Method", method, "X-Original-URL", "http://" + host + uri,
	}, headers...)...)
}

// signedIn logs name in at the gateway itself and returns the cookie.
func (s *stack) signedIn(name string) (cookie, csrf string) {
	return newClient(s.t, s.srv.URL, "").login(name)
}

// A caller that is not a configured proxy cannot claim a host, path or
// method: it is refused before any session is looked up, whatever it
// forwards, on every adapter.
func TestDecisionRefusesCallersThatAreNotProxies(t *testing.T) {
	s := newStack(t, nil, nil)
	cookie, _ := s.signedIn("root")
	direct := newClient(t, s.srv.URL, "127.0.0.2") // loopback, but not 127.0.0.1
	checks := []response{
		nginxAsk(direct, "GET", "127.0.0.1", "/admin/", "Cookie", cookie),
		direct.do("GET", "/auth/forward/caddy", "", "Cookie", cookie, "X-Forwarded-Method", "GET",
			"X-Forwarded-Proto", "https", "X-Forwarded-Host", "127.0.0.1", "X-Forwarded-Uri", "/admin/"),
		direct.do("POST", "/auth/forward/envoy/admin/", "", "Cookie", cookie, "Host", "127.0.0.1"),
	}
	for i, res := range checks {
		if res.status != http.StatusForbidden || res.header.Get("X-Forwarded-User") != "" || !strings.Contains(res.body, "not_a_proxy") {
			t.Errorf("call %d from a non-proxy: %d %q, user %q; want 403 not_a_proxy", i, res.status, res.body, res.header.Get("X-Forwarded-User"))
		}
	}
	// The same request from the proxy's address is answered.
	if res := nginxAsk(newClient(t, s.srv.URL, ""), "GET", "127.0.0.1", "/admin/", "Cookie", cookie); res.status != http.StatusOK || res.header.Get("X-Forwarded-User") != "root" {
		t.Fatalf("from the proxy: %d, user %q; want 200 root", res.status, res.header.Get("X-Forwarded-User"))
	}
}

// The decision follows the core's timeouts on the injected clock, and
// never sets a cookie: not on an allow, not on a refusal of an ended
// session (where the gateway's own routes expire the cookie).
func TestDecisionFollowsTheCoreTimeoutsAndSetsNoCookie(t *testing.T) {
	s := newStack(t, nil, nil)
	proxy := newClient(t, s.srv.URL, "")
	cookie, _ := s.signedIn("alice")
	idle := s.st.Sessions.Config().IdleTimeout

	ask := func() response { return nginxAsk(proxy, "GET", "127.0.0.1", "/reports", "Cookie", cookie) }
	// Used within the idle timeout, again and again: the decision's
	// touch keeps the session alive past one idle period.
	for range 3 {
		s.clock.Advance(idle / 2)
		if res := ask(); res.status != http.StatusOK {
			t.Fatalf("used every half idle timeout: %d; want 200", res.status)
		}
	}
	s.clock.Advance(idle + time.Second)
	res := ask()
	if res.status != http.StatusUnauthorized {
		t.Fatalf("after the idle timeout: %d; want 401", res.status)
	}
	for _, r := range []response{res} {
		if sc := r.header["Set-Cookie"]; len(sc) > 0 {
			t.Fatalf("the decision set a cookie: %v", sc)
		}
		if csd := r.header.Get("Clear-Site-Data"); csd != "" {
			t.Fatalf("the decision sent Clear-Site-Data %q", csd)
		}
	}

	cookie, _ = s.signedIn("alice")
	if res := ask(); res.status != http.StatusOK || len(res.header["Set-Cookie"]) > 0 {
		t.Fatalf("fresh session: %d, Set-Cookie %v", res.status, res.header["Set-Cookie"])
	}
	abs := s.st.Sessions.Config().AbsoluteTimeout
	for elapsed := time.Duration(0); elapsed < abs; elapsed += idle / 2 {
		s.clock.Advance(idle / 2)
		ask()
	}
	if res := ask(); res.status != http.StatusUnauthorized {
		t.Fatalf("after the absolute timeout, though used all along: %d; want 401", res.status)
	}
}

// A user's revocation (generation) and a global one (epoch) end access
// through the decision at once.
func TestDecisionSeesRevocations(t *testing.T) {
	ctx := context.Background()
	s := newStack(t, nil, nil)
	proxy := newClient(t, s.srv.URL, "")
	cookie, _ := s.signedIn("alice")
	ask := func() int { return nginxAsk(proxy, "GET", "127.0.0.1", "/reports", "Cookie", cookie).status }
	if got := ask(); got != http.StatusOK {
		t.Fatalf("signed in: %d", got)
	}
	if err := s.st.Sessions.RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := ask(); got != http.StatusUnauthorized {
		t.Fatalf("after RevokeUser: %d; want 401", got)
	}
	cookie, _ = s.signedIn("alice")
	if _, err := s.st.Sessions.RevokeEveryone(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ask(); got != http.StatusUnauthorized {
		t.Fatalf("after RevokeEveryone: %d; want 401", got)
	}
}

// Rules come from the configuration only: the decision URL's query
// changes nothing, paths are matched in plain form only, and a host no
// rule names is refused.
func TestDecisionRules(t *testing.T) {
	s := newStack(t, nil, nil)
	proxy := newClient(t, s.srv.URL, "")
	for _, tc := range []struct {
		name, host, uri string
		want            int
	}{
		{"public path", "127.0.0.1", "/public/a.css", 200},
		{"public prefix on a segment boundary only", "127.0.0.1", "/publicity", 401},
		{"dot segments out of the public prefix", "127.0.0.1", "/public/../admin/", 400},
		{"escaped dot segments", "127.0.0.1", "/public/%2e%2e/admin/", 400},
		{"escaped slash", "127.0.0.1", "/public%2F..%2Fadmin/", 400},
		{"double slash", "127.0.0.1", "//public/x", 400},
		{"escaped letters decode before matching", "127.0.0.1", "/%70ublic/x", 200},
		{"host on another port", "127.0.0.1:8443", "/public/x", 200},
		{"unknown host", "evil.example", "/public/x", 403},
		{"host case", "127.0.0.1", "/reports", 401},
	} {
		res := nginxAsk(proxy, "GET", tc.host, tc.uri)
		if res.status != tc.want {
			t.Errorf("%s (%s%s): %d %s; want %d", tc.name, tc.host, tc.uri, res.status, res.body, tc.want)
		}
	}
	// A query on the decision URL cannot make a path public.
	res := proxy.do("GET", "/auth/forward/nginx?public=1&roles=", "", "X-Original-Method", "GET", "X-Original-URL", "http://127.0.0.1/admin/")
	if res.status != http.StatusUnauthorized {
		t.Fatalf("decision URL with a query: %d; want 401", res.status)
	}
}

// Envoy's HTTP ext_authz, as a harness sends it: the original method,
// Host and headers, and the original path after the path_prefix. (Not run
// against Envoy itself.)
func TestEnvoyExtAuthz(t *testing.T) {
	s := newStack(t, nil, nil)
	envoy := newClient(t, s.srv.URL, "")
	const prefix = "/auth/forward/envoy"
	cookie, csrf := s.signedIn("root")

	anon := envoy.do("GET", prefix+"/reports?x=1", "", "Host", "127.0.0.1", "Accept", "text/html", "Content-Length", "0")
	if anon.status != http.StatusFound || anon.header.Get("Location") != loginLocation("/reports?x=1") {
		t.Fatalf("navigation without a session: %d, Location %q", anon.status, anon.header.Get("Location"))
	}
	ok := envoy.do("GET", prefix+"/admin/users", "", "Host", "127.0.0.1", "Cookie", cookie)
	if ok.status != http.StatusOK || ok.header.Get("X-Forwarded-User") != "root" || ok.header.Get("X-Forwarded-Groups") != "admin,dev" ||
		!strings.HasPrefix(ok.header.Get("Authorization"), "Bearer ") || len(ok.header["Set-Cookie"]) > 0 {
		t.Fatalf("signed in: %d, headers %v", ok.status, ok.header)
	}
	// Envoy sends the original method: unsafe ones are judged.
	if x := envoy.do("POST", prefix+"/reports", "", "Host", "127.0.0.1", "Cookie", cookie, "Sec-Fetch-Site", "cross-site"); x.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d; want 403", x.status)
	}
	if x := envoy.do("PUT", prefix+"/reports", "", "Host", "127.0.0.1", "Cookie", cookie); x.status != http.StatusForbidden {
		t.Fatalf("PUT without Fetch Metadata, Origin or token: %d; want 403", x.status)
	}
	if x := envoy.do("PUT", prefix+"/reports", "", "Host", "127.0.0.1", "Cookie", cookie, cloakroomCSRF, csrf); x.status != http.StatusOK {
		t.Fatalf("PUT with the X-CSRF-Token header: %d %s; want 200", x.status, x.body)
	}
	if x := envoy.do("GET", prefix+"reports", "", "Host", "127.0.0.1", "Cookie", cookie); x.status == http.StatusOK {
		t.Fatalf("a path not after the prefix: %d; want a refusal", x.status)
	}
}

// Two gateways sharing one Redis: a session revoked on one is refused by
// the other's decision at once.
func TestDecisionRevocationAcrossGatewaysOnRedis(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	open := func() *redisstore.Store {
		// Each gateway with its own client and its client-side cache, as
		// two processes have.
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		st, err := redisstore.New(client, redisstore.Config{Prefix: prefix, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := newStack(t, open(), c)
	b := newStack(t, open(), c)
	cookie, _ := a.signedIn("alice")
	askB := func() int {
		return nginxAsk(newClient(t, b.srv.URL, ""), "GET", "127.0.0.1", "/reports", "Cookie", cookie).status
	}
	if got := askB(); got != http.StatusOK {
		t.Fatalf("the other gateway, before the revocation: %d; want 200", got)
	}
	if err := a.st.Sessions.RevokeUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	if got := askB(); got != http.StatusUnauthorized {
		t.Fatalf("the other gateway, after the revocation: %d; want 401", got)
	}
}

// An allowing answer always carries X-Cloakroom-Cookie: the browser's
// Cookie header without the session and known-device cookies, in one
// line, empty when nothing else is left. A refusal carries none.
func TestDecisionAnswersTheCookiesForTheApp(t *testing.T) {
	s := newStack(t, nil, nil)
	proxy := newClient(t, s.srv.URL, "")
	cookie, _ := s.signedIn("alice")
	device := signin.DeviceCookie + "=devicetoken"
	for _, tc := range []struct {
		uri     string
		cookies []string
		want    string
	}{
		{"/reports", []string{cookie}, ""},
		{"/reports", []string{"a=1; " + cookie + "; " + device + "; b=2"}, "a=1; b=2"},
		{"/reports", []string{"a=1", cookie, device}, "a=1"},
		{"/public/x", nil, ""},
		{"/public/x", []string{"a=1"}, "a=1"},
		{"/public/x", []string{device + "; a=1"}, "a=1"},
	} {
		var headers []string
		for _, c := range tc.cookies {
			headers = append(headers, "Cookie", c)
		}
		res := nginxAsk(proxy, "GET", "127.0.0.1", tc.uri, headers...)
		got, present := res.header[forwardauth.HeaderCookie]
		if res.status != http.StatusOK || !present || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s with cookies %q: %d, %s %q; want 200 and %q", tc.uri, tc.cookies, res.status, forwardauth.HeaderCookie, got, tc.want)
		}
	}
	// Refused: nothing for the app.
	res := nginxAsk(proxy, "GET", "127.0.0.1", "/reports", "Cookie", "a=1")
	if _, present := res.header[forwardauth.HeaderCookie]; res.status != http.StatusUnauthorized || present {
		t.Fatalf("without a session: %d, %s %v; want 401 without it", res.status, forwardauth.HeaderCookie, res.header[forwardauth.HeaderCookie])
	}
}

// docs/deploy.md shows the configurations the proxy tests run, verbatim.
func TestDeployDocShowsTheTestedConfigs(t *testing.T) {
	doc, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nginx.conf", "Caddyfile", "traefik.yml", "ingress-nginx.yaml"} {
		if conf := readConfig(t, name); !strings.Contains(string(doc), conf) {
			t.Errorf("docs/deploy.md does not show forwardauth/testdata/%s verbatim", name)
		}
	}
}

// The identity headers of an allowing answer share one backing array:
// each value is its own, so a wrapper that appends to one header or edits
// it in place changes no other.
func TestDecisionAnswerHeadersAreIndependent(t *testing.T) {
	s := newStack(t, nil, nil)
	cookie, _ := s.signedIn("root")
	req := httptest.NewRequest("GET", "/auth/forward/nginx", nil)
	req.RemoteAddr = "127.0.0.1:4000"
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URL", "http://127.0.0.1/reports")
	req.Header.Set("Cookie", "a=1; "+cookie)
	rec := httptest.NewRecorder()
	s.st.Gateway.Handler().ServeHTTP(rec, req)
	h := rec.Header() // the map the handler wrote, not a copy
	names := []string{forwardauth.HeaderUser, forwardauth.HeaderEmail, forwardauth.HeaderGroups, forwardauth.HeaderAMR, forwardauth.HeaderAuthorization, forwardauth.HeaderCookie}
	want := map[string]string{}
	for _, n := range names {
		if len(h[n]) != 1 {
			t.Fatalf("%d: %s = %q; want one value", rec.Code, n, h[n])
		}
		want[n] = h[n][0]
	}
	if rec.Code != http.StatusOK || want[forwardauth.HeaderGroups] != "admin,dev" || want[forwardauth.HeaderCookie] != "a=1" {
		t.Fatalf("%d %v; want 200 for root with groups admin,dev and the app's cookie a=1", rec.Code, want)
	}
	for _, n := range names {
		h[n] = append(h[n], "appended")
		h[n][0] = "edited " + n
		for _, other := range names {
			if other != n && (len(h[other]) != 1 || h[other][0] != want[other]) {
				t.Fatalf("changing %s changed %s to %q", n, other, h[other])
			}
		}
		h[n] = []string{want[n]}
	}
}

// Traefik resolves a relative Location in the decision's answer against
// the decision's own URL, which would send the browser to cloakroom's
// internal address: its adapter answers an absolute URL on the host and
// scheme the browser asked for (a host the rules name). Caddy passes the
// relative one on as is.
func TestTraefikSignInRedirectIsAbsolute(t *testing.T) {
	s := newStack(t, nil, nil)
	proxy := newClient(t, s.srv.URL, "")
	ask := func(adapter, proto, host string) response {
		return proxy.do("GET", "/auth/forward/"+adapter, "", "X-Forwarded-Method", "GET", "X-Forwarded-Proto", proto,
			"X-Forwarded-Host", host, "X-Forwarded-Uri", "/reports?q=1", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
	}
	for _, tc := range []struct{ adapter, proto, host, want string }{
		{"traefik", "https", "127.0.0.1", "https://127.0.0.1" + loginLocation("/reports?q=1")},
		{"traefik", "http", "localhost:8443", "http://localhost:8443" + loginLocation("/reports?q=1")},
		{"caddy", "https", "127.0.0.1", loginLocation("/reports?q=1")},
	} {
		if res := ask(tc.adapter, tc.proto, tc.host); res.status != http.StatusFound || res.header.Get("Location") != tc.want {
			t.Errorf("%s for %s://%s: %d, Location %q; want 302 to %q", tc.adapter, tc.proto, tc.host, res.status, res.header.Get("Location"), tc.want)
		}
	}
	// A host no rule names gets no redirect at all.
	if res := ask("traefik", "https", "evil.example"); res.status == http.StatusFound || res.header.Get("Location") != "" {
		t.Fatalf("traefik for another host: %d, Location %q; want a refusal", res.status, res.header.Get("Location"))
	}
}

// cloakroom's own paths are never decided for an app: a decision there
// would vouch for the session where the gateway's endpoints relax a rule
// (the device-binding endpoints take a bound session without its bound
// cookie).
func TestDecisionRefusesCloakroomsOwnPaths(t *testing.T) {
	s := newStack(t, nil, nil)
	cookie, _ := s.signedIn("root")
	for _, target := range []string{"/auth/dbsc/refresh", "/auth/dbsc/register", "/auth", "/auth/login"} {
		req := httptest.NewRequest("GET", "/auth/forward/nginx", nil)
		req.RemoteAddr = "127.0.0.1:4000"
		req.Header.Set("X-Original-Method", "POST")
		req.Header.Set("X-Original-URL", "http://127.0.0.1"+target)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Cookie", cookie)
		rec := httptest.NewRecorder()
		s.st.Gateway.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden || rec.Header().Get(forwardauth.HeaderUser) != "" {
			t.Errorf("a decision for POST %s: %d, user %q; want 403 and no user", target, rec.Code, rec.Header().Get(forwardauth.HeaderUser))
		}
	}
}
