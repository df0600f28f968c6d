package forwardauth_test

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/testservers"
)

// renderIngressNginx follows ingress-nginx's template
// (rootfs/etc/nginx/template/nginx.tmpl and the helpers in
// internal/ingress/controller/template/template.go) as of
// controller-v1.15.0-14-gdbb11b92d, 2026-03-20.

// ingressAnnotations reads the annotations of
// testdata/ingress-nginx.yaml, the block docs/deploy.md shows.
func ingressAnnotations(t *testing.T) map[string]string {
	t.Helper()
	const prefix = "nginx.ingress.kubernetes.io/"
	annotations := map[string]string{}
	for _, line := range strings.Split(readConfig(t, "ingress-nginx.yaml"), "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if name, found := strings.CutPrefix(key, prefix); ok && found {
			annotations[name] = strings.TrimSpace(value)
		}
	}
	for _, name := range []string{"auth-url", "auth-signin", "auth-response-headers"} {
		if annotations[name] == "" {
			t.Fatalf("testdata/ingress-nginx.yaml has no %s annotation", name)
		}
	}
	return annotations
}

// renderIngressNginx writes what ingress-nginx renders inside the http
// block for an Ingress of one host, path "/" (Prefix), backed by app, with
// the given annotations, and for a second Ingress routing /auth/ of the
// same host to cloakroom. It keeps the directives that decide
// authentication, the headers each side sees and the sign-in redirect,
// in the template's words; it leaves out what needs ingress-nginx's Lua
// (its balancer: the upstreams here are addresses), metrics, logs and
// timeouts. The sign-in URL and the response headers are built as the
// controller builds them.
func renderIngressNginx(annotations map[string]string, listen, cloakroom, app string) string {
	authURL := annotations["auth-url"]
	u, _ := url.Parse(authURL)
	signin := annotations["auth-signin"]
	// buildAuthSignURL: the redirect parameter (rd) is added unless the
	// sign-in URL has one.
	if q, _ := url.Parse(signin); q.Query().Get("rd") == "" {
		sep := "?"
		if len(q.Query()) > 0 {
			sep = "&"
		}
		signin += sep + "rd=$pass_access_scheme://$http_host$escaped_request_uri"
	}
	authPath := "/_external-auth-" + base64.RawURLEncoding.EncodeToString([]byte("/")) + "-Prefix"
	h := sha1.Sum([]byte("/" + annotations["auth-signin"]))
	signinLocation := "@" + hex.EncodeToString(h[:])
	var responseHeaders strings.Builder
	for i, name := range strings.Split(annotations["auth-response-headers"], ",") {
		name = strings.TrimSpace(name)
		variable := strings.ReplaceAll(strings.ToLower(name), "-", "_")
		fmt.Fprintf(&responseHeaders, "            auth_request_set $authHeader%d $upstream_http_%s;\n", i, variable)
		fmt.Fprintf(&responseHeaders, "            proxy_set_header '%s' $authHeader%d;\n", name, i)
	}
	return fmt.Sprintf(`
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    map $http_x_request_id $req_id { default $http_x_request_id; "" $request_id; }

    server {
        listen %[1]s;
        server_name app.example.com;

        location = %[4]s {
            internal;
            access_log off;
            set $proxy_upstream_name "default-app-3000";
            proxy_intercept_errors      off;
            proxy_pass_request_body     off;
            proxy_set_header            Content-Length          "";
            proxy_set_header            X-Forwarded-Proto       "";
            proxy_set_header            X-Request-ID            $req_id;
            proxy_set_header            Host                    %[5]s;
            proxy_set_header            X-Original-URL          $scheme://$http_host$request_uri;
            proxy_set_header            X-Original-Method       $request_method;
            proxy_set_header            X-Sent-From             "nginx-ingress-controller";
            proxy_set_header            X-Real-IP               $remote_addr;
            proxy_set_header            X-Forwarded-For        $remote_addr;
            proxy_set_header            X-Auth-Request-Redirect $request_uri;
            proxy_buffering                         off;
            proxy_buffer_size                       4k;
            proxy_buffers                           4 4k;
            proxy_request_buffering                 on;
            proxy_ssl_server_name       on;
            proxy_pass_request_headers  on;
            client_max_body_size        1m;
            proxy_http_version 1.1;
            set $target %[6]q;
            proxy_pass $target;
        }

        location %[7]s {
            internal;
            add_header Set-Cookie $auth_cookie;
            return 302 %[8]s;
        }

        location / {
            port_in_redirect off;
            set $proxy_upstream_name "default-app-3000";
            set $pass_access_scheme  $scheme;
            set $pass_server_port    $server_port;
            set $best_http_host      $http_host;
            set $pass_port           $pass_server_port;

            # this location requires authentication
            auth_request        %[4]s;
            auth_request_set    $auth_cookie $upstream_http_set_cookie;
            add_header          Set-Cookie $auth_cookie;
%[9]s
            set_escape_uri $escaped_request_uri $request_uri;
            error_page 401 = %[7]s;

            client_max_body_size 1m;
            proxy_set_header Host                   $best_http_host;
            proxy_set_header                        Upgrade           $http_upgrade;
            proxy_set_header                        Connection        $connection_upgrade;
            proxy_set_header X-Request-ID           $req_id;
            proxy_set_header X-Real-IP              $remote_addr;
            proxy_set_header X-Forwarded-For        $remote_addr;
            proxy_set_header X-Forwarded-Host       $best_http_host;
            proxy_set_header X-Forwarded-Port       $pass_port;
            proxy_set_header X-Forwarded-Proto      $pass_access_scheme;
            proxy_set_header X-Forwarded-Scheme     $pass_access_scheme;
            proxy_set_header X-Scheme               $pass_access_scheme;
            proxy_set_header X-Original-Forwarded-For $http_x_forwarded_for;
            proxy_set_header Proxy                  "";
            proxy_http_version 1.1;
            proxy_pass http://%[3]s;
        }

        location /auth/ {
            port_in_redirect off;
            set $pass_access_scheme  $scheme;
            set $best_http_host      $http_host;
            proxy_set_header Host                   $best_http_host;
            proxy_set_header X-Real-IP              $remote_addr;
            proxy_set_header X-Forwarded-For        $remote_addr;
            proxy_set_header X-Forwarded-Host       $best_http_host;
            proxy_set_header X-Forwarded-Proto      $pass_access_scheme;
            proxy_set_header Proxy                  "";
            proxy_http_version 1.1;
            proxy_pass http://%[2]s;
        }
    }
`, listen, cloakroom, app, authPath, u.Hostname(), authURL, signinLocation, signin, responseHeaders.String())
}

// Through a real nginx configured as ingress-nginx configures it for the
// annotations docs/deploy.md shows: sign-in through the ingress, the app
// reached with the decision's identity whatever the client sent, roles,
// cross-site and token-less unsafe requests refused, a client-sent
// X-Original-* header believed nowhere, logout ending access at once.
func TestThroughIngressNginxAnnotations(t *testing.T) {
	annotations := ingressAnnotations(t)
	s := newStack(t, nil, nil)
	app := newApp(t)
	docAuth, _ := url.Parse(annotations["auth-url"])
	annotations["auth-url"] = strings.Replace(annotations["auth-url"], docAuth.Host, hostOf(s.srv.URL), 1)
	srv := testservers.StartNginxWithModules(t, []string{"ndk_http_module.so", "ngx_http_set_misc_module.so"}, func(listen string) string {
		return renderIngressNginx(annotations, listen, hostOf(s.srv.URL), hostOf(app.URL))
	})
	base := "http://" + srv.Addr
	c := newClient(t, base, "")
	hostname, _, _ := strings.Cut(srv.Addr, ":")

	// Without a session every request, a script's too, gets the sign-in
	// redirect ingress-nginx builds (it cannot tell navigations from
	// scripts); return_to is the escaped path and query.
	for _, accept := range []string{"text/html", "application/json"} {
		res := c.do("GET", "/reports?year=2025&q=x", "", "Accept", accept, "Sec-Fetch-Mode", "navigate")
		want := "https://" + hostname + "/auth/login?return_to=" + url.QueryEscape("/reports?year=2025&q=x") + "&rd="
		if loc := res.header.Get("Location"); res.status != http.StatusFound || !strings.HasPrefix(loc, want) {
			t.Fatalf("without a session (Accept %s): %d, Location %q; want 302 to %s…", accept, res.status, loc, want)
		}
		if res.body != "" && strings.Contains(res.body, `"method"`) {
			t.Fatalf("a request without a session reached the app: %s", res.body)
		}
	}
	if page := c.do("GET", "/auth/login?return_to=%2Freports", "", "Accept", "text/html"); page.status != http.StatusOK || !strings.Contains(page.body, `value="/reports"`) {
		t.Fatalf("the sign-in page through the ingress: %d; want 200 with return_to /reports", page.status)
	}

	// A public path needs no session, and the app gets no identity: the
	// client's copies are replaced by the decision's empty ones.
	pub := c.do("GET", "/public/logo", "", "X-Forwarded-User", "mallory", "X-Forwarded-Amr", "forged", "Authorization", "Bearer forged")
	if pub.status != http.StatusOK {
		t.Fatalf("public path: %d %s", pub.status, pub.body)
	}
	assertIdentity(t, pub.app(), "", "", "", "", nil)

	cookie, csrf := c.login("alice")
	got := c.do("GET", "/reports", "", "Cookie", cookie,
		"X-Forwarded-User", "mallory", "X_Forwarded_User", "mallory", "X-Forwarded-Groups", "admin",
		"X-Forwarded-Email", "mallory@evil.example", "X-Forwarded-Amr", "forged-hwk", "X_Forwarded_Amr", "forged", "Authorization", "Bearer forged")
	if got.status != http.StatusOK {
		t.Fatalf("signed-in request: %d %s", got.status, got.body)
	}
	if sc := got.header["Set-Cookie"]; len(sc) > 0 {
		t.Fatalf("a request through the ingress set cookies: %v", sc)
	}
	assertIdentity(t, got.app(), "alice", "alice@example.com", "dev", "pwd", s)
	// ingress-nginx copies answer headers by name and cannot replace
	// Cookie: the app gets the session cookie (docs/deploy.md says so).
	if c := got.app().Header.Get("Cookie"); c != cookie {
		t.Errorf("the app got Cookie %q; docs/deploy.md says it gets the browser's, %q", c, cookie)
	}

	if adm := c.do("GET", "/admin/users", "", "Cookie", cookie); adm.status != http.StatusForbidden {
		t.Fatalf("alice on /admin/: %d; want 403", adm.status)
	}
	// A client's X-Original-URL or X-Original-Method is replaced by the
	// ingress's own: no way to borrow a public path's verdict or turn a
	// POST into a GET.
	if adm := c.do("GET", "/admin/users", "", "Cookie", cookie, "X-Original-URL", "http://"+srv.Addr+"/public/x"); adm.status != http.StatusForbidden {
		t.Fatalf("alice on /admin/ claiming /public/: %d; want 403", adm.status)
	}
	if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "X-Original-Method", "GET"); x.status != http.StatusForbidden {
		t.Fatalf("token-less POST claiming GET: %d %s; want 403", x.status, x.body)
	}
	if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); x.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d %s; want 403", x.status, x.body)
	}
	if x := c.do("POST", "/reports", "a=1", "Cookie", cookie, "Sec-Fetch-Site", "same-origin"); x.status != http.StatusOK || x.app().Method != "POST" {
		t.Fatalf("same-origin POST: %d %s; want it at the app", x.status, x.body)
	}
	if x := c.do("DELETE", "/reports/1", "", "Cookie", cookie, cloakroomCSRF, csrf); x.status != http.StatusOK {
		t.Fatalf("DELETE with the X-CSRF-Token header: %d %s", x.status, x.body)
	}

	if out := c.do("POST", "/auth/logout", "", "Cookie", cookie, cloakroomCSRF, csrf, "Accept", "application/json"); out.status >= 300 {
		t.Fatalf("logout through the ingress: %d %s", out.status, out.body)
	}
	if after := c.do("GET", "/reports", "", "Cookie", cookie, "Accept", "application/json"); after.status != http.StatusFound {
		t.Fatalf("after logout: %d %s; want the sign-in redirect", after.status, after.body)
	}
}
