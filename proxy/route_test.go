package proxy_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/proxy"
)

func TestParseRoute(t *testing.T) {
	valid := []struct{ in, prefix, upstream string }{
		{"/api/=http://127.0.0.1:9000", "/api/", "http://127.0.0.1:9000"},
		{"/api=http://127.0.0.1:9000", "/api/", "http://127.0.0.1:9000"},
		{"/=https://backend.internal", "/", "https://backend.internal"},
		{"/v1/users/=http://[::1]:8080/base", "/v1/users/", "http://[::1]:8080/base"},
		{"/a.b_c~d-e/=HTTP://Example.com:81/", "/a.b_c~d-e/", "http://Example.com:81/"},
	}
	for _, tc := range valid {
		r, err := proxy.ParseRoute(tc.in)
		if err != nil {
			t.Errorf("ParseRoute(%q): %v", tc.in, err)
			continue
		}
		if r.Prefix != tc.prefix || r.Upstream.String() != tc.upstream {
			t.Errorf("ParseRoute(%q) = %q %q, want %q %q", tc.in, r.Prefix, r.Upstream, tc.prefix, tc.upstream)
		}
	}

	invalid := []struct{ in, why string }{
		{"", "PREFIX=URL"},
		{"/api/", "PREFIX=URL"},
		{"=http://127.0.0.1", "empty prefix"},
		{"api/=http://127.0.0.1", "does not start with /"},
		{"/api/../admin/=http://127.0.0.1", "not clean"},
		{"/api//x/=http://127.0.0.1", "not clean"},
		{"/api/./=http://127.0.0.1", "not clean"},
		{"//=http://127.0.0.1", "not clean"},
		{"/api%2f/=http://127.0.0.1", "contains"},
		{"/a b/=http://127.0.0.1", "contains"},
		{"/api;x/=http://127.0.0.1", "contains"},
		{"/api/=", "empty upstream"},
		{"/api/=ftp://127.0.0.1", "http or https"},
		{"/api/=127.0.0.1:9000", "http or https"},
		{"/api/=http://", "no host"},
		{"/api/=http://:9000", "no host"},
		{"/api/=http:opaque", "no host"},
		{"/api/=http://user:pass@127.0.0.1", "userinfo"},
		{"/api/=http://127.0.0.1/?a=b", "query"},
		{"/api/=http://127.0.0.1/?", "query"},
		{"/api/=http://127.0.0.1/#frag", "fragment"},
		{"/api/=http://127.0.0.1/a/../b", "not clean"},
		{"/api/=http://127.0.0.1/a%2fb", "escaped"},
		{"/api/=http://127.0.0.1:port", "upstream"},
		{"/" + strings.Repeat("a", 3000) + "=http://127.0.0.1", "longer than"},
	}
	for _, tc := range invalid {
		_, err := proxy.ParseRoute(tc.in)
		if !errors.Is(err, proxy.ErrInvalidRoute) {
			t.Errorf("ParseRoute(%q) = %v, want ErrInvalidRoute", tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseRoute(%q) error %q does not explain %q", tc.in, err, tc.why)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := proxy.Route{Prefix: "/api/", Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}}
	cases := map[string]proxy.Config{
		"no routes":        {},
		"duplicate prefix": {Routes: []proxy.Route{good, {Prefix: "/api", Upstream: good.Upstream}}},
		"nil upstream":     {Routes: []proxy.Route{{Prefix: "/api/"}}},
		"unclean prefix":   {Routes: []proxy.Route{{Prefix: "/api/../x/", Upstream: good.Upstream}}},
		"bad scheme":       {Routes: []proxy.Route{{Prefix: "/api/", Upstream: &url.URL{Scheme: "file", Host: "x"}}}},
		"query":            {Routes: []proxy.Route{{Prefix: "/api/", Upstream: &url.URL{Scheme: "http", Host: "x", RawQuery: "a=b"}}}},
		"bad cookie name":  {Routes: []proxy.Route{good}, SessionCookie: "a;b"},
		"no cookie name":   {Routes: []proxy.Route{good}},
	}
	for name, cfg := range cases {
		if cfg.SessionCookie == "" && name != "no cookie name" {
			cfg.SessionCookie = sessionCookieName // so each case fails for its own reason
		}
		if _, err := proxy.New(cfg); !errors.Is(err, proxy.ErrInvalidConfig) {
			t.Errorf("%s: New = %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestRoutingLongestPrefixAndAllowlist(t *testing.T) {
	api := newUpstream(t, "api")
	admin := newUpstream(t, "admin")
	base := newUpstream(t, "base")
	baseURL := base.url(t)
	baseURL.Path = "/base"
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{
		api.route(t, "/api/"),
		admin.route(t, "/api/admin/"),
		{Prefix: "/v1", Upstream: baseURL},
	}})
	gw := startGateway(t, p, nil)

	routed := []struct{ path, upstream, upstreamPath string }{
		{"/api/users?id=7", "api", "/api/users"},
		{"/api", "api", "/api"},
		{"/api/", "api", "/api/"},
		{"/api/adminx", "api", "/api/adminx"},
		{"/api/admin", "admin", "/api/admin"},
		{"/api/admin/keys", "admin", "/api/admin/keys"},
		{"/v1/x", "base", "/base/v1/x"},
	}
	for _, tc := range routed {
		status, e, _ := get(t, gw.URL+tc.path, nil)
		if status != http.StatusOK || e.Upstream != tc.upstream || e.Path != tc.upstreamPath {
			t.Errorf("GET %s: %d to %q path %q, want 200 to %q path %q", tc.path, status, e.Upstream, e.Path, tc.upstream, tc.upstreamPath)
		}
	}
	if status, e, _ := get(t, gw.URL+"/api/users?id=7&x=%2F", nil); status != http.StatusOK || !strings.HasSuffix(e.RequestURI, "?id=7&x=%2F") {
		t.Errorf("query string not passed through: %d %q", status, e.RequestURI)
	}

	before := api.hits.Load() + admin.hits.Load() + base.hits.Load()
	for _, path := range []string{"/", "/apix", "/ap", "/admin/keys", "/v2/x", "/static/app.js"} {
		if status, _, _ := get(t, gw.URL+path, nil); status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, status)
		}
	}
	if after := api.hits.Load() + admin.hits.Load() + base.hits.Load(); after != before {
		t.Errorf("unrouted requests reached an upstream (%d requests)", after-before)
	}

	if r, _ := p.Match("/api/x"); r.Upstream != nil {
		r.Upstream.Host = "evil.test:1" // must not reroute the proxy
	}
	if status, e, _ := get(t, gw.URL+"/api/x", nil); status != http.StatusOK || e.Upstream != "api" {
		t.Errorf("mutating Match's result rerouted the proxy: %d %q", status, e.Upstream)
	}

	for path, want := range map[string]string{"/api/x": "/api/", "/api/admin/x": "/api/admin/", "/v1": "/v1/", "/nope": ""} {
		r, ok := p.Match(path)
		if r.Prefix != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q %v, want %q", path, r.Prefix, ok, want)
		}
	}
}
