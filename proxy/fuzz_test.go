package proxy_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/proxy"
)

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/api/=http://127.0.0.1:9000", "/=https://h", "/a=http://[::1]:1/b", "/api/../x=http://h",
		"/api=http://u@h", "/x/=http://h/?q", "/x/=http://h/#f", "//=http://h", "/%2f/=http://h", "=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := proxy.ParseRoute(s)
		if err != nil {
			if !errors.Is(err, proxy.ErrInvalidRoute) {
				t.Fatalf("error %v does not wrap ErrInvalidRoute", err)
			}
			return
		}
		p := r.Prefix
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") ||
			(p != "/" && path.Clean(p)+"/" != p) || strings.ContainsAny(p, "%;\\?#") {
			t.Fatalf("accepted unclean prefix %q from %q", p, s)
		}
		u := r.Upstream
		if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("accepted upstream %q from %q", u, s)
		}
		again, err := proxy.ParseRoute(r.String())
		if err != nil || again.String() != r.String() {
			t.Fatalf("round trip of %q: %v %q", r.String(), err, again.String())
		}
		if _, err := proxy.New(proxy.Config{Routes: []proxy.Route{r}, SessionCookie: sessionCookieName}); err != nil {
			t.Fatalf("New refuses a parsed route %q: %v", r, err)
		}
	})
}

// tomcatParams strips ";..." path parameters, as Tomcat does per segment.
var tomcatParams = regexp.MustCompile(`;[^/]*`)

// FuzzPathSafety sends arbitrary request targets through Proxy to a real
// upstream. Whatever reaches the upstream must stay under the route prefix
// even for an upstream that decodes repeatedly, maps "\" to "/" and drops
// path parameters.
func FuzzPathSafety(f *testing.F) {
	api := newUpstream(f, "api")
	p := newProxy(f, proxy.Config{Routes: []proxy.Route{api.route(f, "/api/")}})
	for _, s := range []string{
		"/api/x", "/api/../admin", "/api/%2e%2e/admin", "/api/..%2fadmin", "/api/..;/admin", "/api/%252e%252e/",
		`/api/..\admin`, "/api/%5c..%5c", "/api//x", "/api/x/", "/api/%c0%ae%c0%ae/", "/api/%ef%bc%8e%ef%bc%8e/", "*", "/api?x=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: gw\r\n\r\n")))
		if err != nil {
			return // net/http would refuse it before any handler
		}
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		p.Serve(rec, req, proxy.Call{})
		if rec.Code != http.StatusOK {
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusNotFound {
				t.Fatalf("%q: status %d", target, rec.Code)
			}
			return
		}
		var e echo
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%q: %v", target, err)
		}
		rawPath, _, _ := strings.Cut(e.RequestURI, "?")
		normalised := rawPath
		for range 3 {
			dec, err := url.PathUnescape(normalised)
			if err != nil {
				break
			}
			normalised = dec
		}
		normalised = strings.ReplaceAll(normalised, `\`, "/")
		normalised = path.Clean(tomcatParams.ReplaceAllString(normalised, ""))
		if normalised != "/api" && !strings.HasPrefix(normalised, "/api/") {
			t.Fatalf("%q reached the upstream as %q, which normalises to %q", target, rawPath, normalised)
		}
	})
}
