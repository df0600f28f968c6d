package forwardauth_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// The proxy configurations are the ones docs/deploy.md shows (a test
// checks the doc includes them verbatim); the tests change only the
// addresses: cloakroom's, the app's and the listen address.
const (
	docCloakroomAddr = "127.0.0.1:8080"
	docAppAddr       = "127.0.0.1:3000"
)

func readConfig(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// substitute puts the test's addresses into a documented config, and
// fails when one of the documented ones is missing (the doc changed).
func substitute(t *testing.T, conf string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(conf, pairs[i]) {
			t.Fatalf("the documented config no longer contains %q", pairs[i])
		}
		conf = strings.ReplaceAll(conf, pairs[i], pairs[i+1])
	}
	return conf
}

func hostOf(rawURL string) string {
	u, _ := url.Parse(rawURL)
	return u.Host
}

// startNginx starts nginx with the documented config in front of s and app.
func startNginx(t *testing.T, s *stack, app string) string {
	conf := readConfig(t, "nginx.conf")
	srv := testservers.StartNginx(t, func(listen string) string {
		return substitute(t, conf, docCloakroomAddr, hostOf(s.srv.URL), docAppAddr, hostOf(app), "listen 80;", "listen "+listen+";")
	})
	return "http://" + srv.Addr
}

// startCaddy starts Caddy with the documented Caddyfile in front of s and
// app.
func startCaddy(t *testing.T, s *stack, app string) string {
	conf := readConfig(t, "Caddyfile")
	srv := testservers.StartCaddy(t, func(listen string) string {
		return substitute(t, conf, docCloakroomAddr, hostOf(s.srv.URL), docAppAddr, hostOf(app), "app.example.com {", "http://"+listen+" {")
	})
	return "http://" + srv.Addr
}

var proxies = []struct {
	name  string
	start func(*testing.T, *stack, string) string
}{
	{"nginx", startNginx},
	{"caddy", startCaddy},
}

// Through a real nginx and a real Caddy configured as docs/deploy.md
// shows: sign-in through the proxy, the app reached with the identity
// the decision vouched for (client-sent copies stripped), roles and
// public paths, cross-site and token-less unsafe requests refused,
// return_to kept on the host, logout ending access at once.
func TestThroughRealProxies(t *testing.T) {
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			s := newStack(t, nil, nil)
			app := newApp(t)
			base := p.start(t, s, app.URL)
			c := newClient(t, base, "")
			host := hostOf(base)

			// Not signed in: a navigation is sent to the sign-in page on
			// the same host, a script gets 401, nothing reaches the app.
			nav := c.do("GET", "/reports?year=2025&q=x", "", "Accept", "text/html", "Sec-Fetch-Mode", "navigate")
			if nav.status != http.StatusFound || nav.header.Get("Location") != loginLocation("/reports?year=2025&q=x") {
				t.Fatalf("navigation without a session: %d, Location %q; want 302 to the sign-in page", nav.status, nav.header.Get("Location"))
			}
			if script := c.do("GET", "/reports", "", "Accept", "application/json"); script.status != http.StatusUnauthorized {
				t.Fatalf("script without a session: %d %s; want 401", script.status, script.body)
			}
			if page := c.do("GET", "/auth/login?return_to=%2Freports", "", "Accept", "text/html"); page.status != http.StatusOK || !strings.Contains(page.body, `value="/reports"`) {
				t.Fatalf("the sign-in page through the proxy: %d; want 200 with return_to /reports", page.status)
			}

			// Public paths need no session, and the app gets no identity
			// (nor Caddy's placeholder text).
			pub := c.do("GET", "/public/logo", "", "X-Forwarded-User", "mallory", "X-Forwarded-Amr", "forged")
			if pub.status != http.StatusOK {
				t.Fatalf("public path: %d %s", pub.status, pub.body)
			}
			assertIdentity(t, pub.app(), "", "", "", "", nil)

			cookie, csrf := c.login("alice")
			// The app gets the decision's identity, never the client's.
			got := c.do("GET", "/reports", "", "Cookie", cookie,
				"X-Forwarded-User", "mallory", "X_Forwarded_User", "mallory", "X-Forwarded-Groups", "admin",
				"X-Forwarded-Email", "mallory@evil.example", "X-Forwarded-Amr", "forged-hwk", "X_Forwarded_Amr", "forged", "Authorization", "Bearer forged")
			if got.status != http.StatusOK {
				t.Fatalf("signed-in request: %d %s", got.status, got.body)
			}
			if sc := got.header["Set-Cookie"]; len(sc) > 0 {
				t.Fatalf("a request through forward auth set cookies: %v", sc)
			}
			assertIdentity(t, got.app(), "alice", "alice@example.com", "dev", "pwd", s)
			if c := got.app().Header.Get("Cookie"); c != "" {
				t.Errorf("the app got Cookie %q; want none (the request carried the session cookie only)", c)
			}

			// The app gets the browser's other cookies, never the session
			// cookie or the known-device cookie, however they are sent.
			device := signin.DeviceCookie + "=devicetoken"
			for _, cookies := range [][]string{
				{"theme=dark; " + cookie + "; " + device + "; lang=en"},
				{"theme=dark", cookie, device + "; lang=en"},
				{cookie + ";theme=dark;" + device + ";lang=en;"},
			} {
				var hs []string
				for _, v := range cookies {
					hs = append(hs, "Cookie", v)
				}
				res := c.do("GET", "/reports", "", hs...)
				if res.status != http.StatusOK {
					t.Fatalf("signed in with other cookies %q: %d %s", cookies, res.status, res.body)
				}
				assertAppCookies(t, res.app(), cookie, "theme=dark; lang=en")
			}
			// Also on a public path, with or without a session.
			assertAppCookies(t, c.do("GET", "/public/logo", "", "Cookie", "theme=dark; "+device).app(), cookie, "theme=dark")
			assertAppCookies(t, c.do("GET", "/public/logo", "", "Cookie", cookie+"; theme=dark").app(), cookie, "theme=dark")
			assertAppCookies(t, c.do("GET", "/public/logo", "", "Cookie", cookie).app(), cookie, "")
			// A client-sent X-Cloakroom-Cookie is not what the app gets.
			assertAppCookies(t, c.do("GET", "/reports", "", "Cookie", cookie, "X-Cloakroom-Cookie", "forged=1").app(), cookie, "")
			// Other cookies up to nginx's default 8 KB header line pass.
			big := "big=" + strings.Repeat("b", 4000) + "; big2=" + strings.Repeat("c", 3000)
			if res := c.do("GET", "/reports", "", "Cookie", big+"; "+cookie); res.status != http.StatusOK {
				t.Fatalf("signed in with %d bytes of other cookies: %d %s", len(big), res.status, res.body)
			} else {
				assertAppCookies(t, res.app(), cookie, big)
			}

			// Roles: /admin/ needs admin.
			if adm := c.do("GET", "/admin/users", "", "Cookie", cookie); adm.status != http.StatusForbidden {
				t.Fatalf("alice on /admin/: %d; want 403", adm.status)
			}

			// Unsafe requests: cross-site refused; neither Fetch Metadata
			// nor Origin nor the token refused; same-origin and the
			// X-CSRF-Token header let through.
			if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); x.status != http.StatusForbidden {
				t.Fatalf("cross-site POST: %d %s; want 403", x.status, x.body)
			}
			if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Origin", "https://evil.example"); x.status != http.StatusForbidden {
				t.Fatalf("POST from another Origin: %d; want 403", x.status)
			}
			if x := c.do("POST", "/reports", "a=1", "Cookie", cookie); x.status != http.StatusForbidden {
				t.Fatalf("POST with neither Fetch Metadata, Origin nor token: %d; want 403", x.status)
			}
			if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Sec-Fetch-Site", "same-origin"); x.status != http.StatusOK || x.app().Method != "POST" {
				t.Fatalf("same-origin POST: %d %s; want it at the app", x.status, x.body)
			}
			if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Origin", "http://"+host); x.status != http.StatusOK {
				t.Fatalf("POST with our Origin: %d %s; want it at the app", x.status, x.body)
			}
			if x := c.do("DELETE", "/reports/1", "", "Cookie", cookie, cloakroomCSRF, csrf); x.status != http.StatusOK {
				t.Fatalf("DELETE with the X-CSRF-Token header: %d %s", x.status, x.body)
			}
			if x := c.do("DELETE", "/reports/1", "", "Cookie", cookie, cloakroomCSRF, "wrong"+csrf); x.status != http.StatusForbidden {
				t.Fatalf("DELETE with a wrong token: %d; want 403", x.status)
			}

			// return_to to another host: the sign-in goes back to "/".
			for _, target := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example"} {
				form := url.Values{"username": {"alice"}, "password": {password}, "return_to": {target}}.Encode()
				res := c.do("POST", "/auth/login", form, "Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html")
				if loc := res.header.Get("Location"); res.status != http.StatusSeeOther || loc != "/" {
					t.Fatalf("sign-in with return_to %q: %d, Location %q; want 303 to /", target, res.status, loc)
				}
			}
			// A Host the rules do not name gets no redirect at all.
			if res := c.do("GET", "/reports", "", "Host", "evil.example", "Accept", "text/html"); res.status == http.StatusFound || res.header.Get("Location") != "" {
				t.Fatalf("a request for another host: %d, Location %q; want a refusal, not a redirect", res.status, res.header.Get("Location"))
			}

			// Logout through the proxy ends access at once.
			if out := c.do("POST", "/auth/logout", "", "Cookie", cookie, cloakroomCSRF, csrf, "Accept", "application/json"); out.status >= 300 {
				t.Fatalf("logout through the proxy: %d %s", out.status, out.body)
			}
			if after := c.do("GET", "/reports", "", "Cookie", cookie, "Accept", "application/json"); after.status != http.StatusUnauthorized {
				t.Fatalf("after logout: %d %s; want 401", after.status, after.body)
			}
		})
	}
}

const cloakroomCSRF = "X-CSRF-Token"

// assertAppCookies checks the app got exactly the cookies want ("" for
// none), and never the session cookie (session is "name=value"), the
// known-device cookie, nor the client's own X-Cloakroom-Cookie as its Cookie.
func assertAppCookies(t *testing.T, got seen, session, want string) {
	t.Helper()
	all := strings.Join(got.Header["Cookie"], "; ")
	_, value, _ := strings.Cut(session, "=")
	for name, values := range got.Header {
		for _, v := range values {
			if strings.Contains(v, value) || strings.Contains(v, cookieName) || strings.Contains(v, signin.DeviceCookie) {
				t.Errorf("the app got %s: %q", name, short(v))
			}
		}
	}
	if all != want {
		t.Errorf("the app got Cookie %q; want %q", short(all), short(want))
	}
}

// short keeps failure messages readable when cookies are kilobytes long.
func short(s string) string {
	if len(s) <= 200 {
		return s
	}
	return s[:100] + fmt.Sprintf("...(%d bytes)...", len(s)-200) + s[len(s)-100:]
}

// assertIdentity checks the identity headers the app got: the decision's,
// with no client-sent copy; wantUser "" means none at all. amr is the
// comma-separated X-Forwarded-Amr. With s, the internal JWT must verify
// for the configured audience and carry the same amr.
func assertIdentity(t *testing.T, got seen, user, email, groups, amr string, s *stack) {
	t.Helper()
	for name, values := range got.Header {
		for _, v := range values {
			if strings.Contains(v, "mallory") || strings.Contains(v, "forged") || strings.Contains(v, "{http.") {
				t.Errorf("the app got %s: %q", name, v)
			}
		}
		if strings.Contains(name, "_") {
			t.Errorf("the app got the header %s", name)
		}
	}
	for name, want := range map[string]string{"X-Forwarded-User": user, "X-Forwarded-Email": email, "X-Forwarded-Groups": groups, "X-Forwarded-Amr": amr} {
		if v := got.Header.Get(name); v != want {
			t.Errorf("the app got %s %q; want %q", name, v, want)
		}
	}
	auth := got.Header.Get("Authorization")
	if s == nil {
		if auth != "" {
			t.Errorf("the app got Authorization %q without a user", auth)
		}
		return
	}
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		t.Fatalf("the app got Authorization %q; want the internal JWT", auth)
	}
	claims, err := upstreamjwt.Verify(token, s.signer.JWKS(), audience, s.clock.Now())
	if err != nil || claims.Identity().User != user {
		t.Fatalf("the internal JWT: %+v, %v; want one for %s", claims, err, user)
	}
	if got := strings.Join(claims.Identity().AMR, ","); got != amr {
		t.Errorf("the internal JWT's amr %q; want %q", got, amr)
	}
}
