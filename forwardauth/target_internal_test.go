package forwardauth

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzNginxTarget: the nginx adapter hands decide the URL it parsed
// instead of parsing the path and query again; whatever it accepts must
// be exactly what url.ParseRequestURI makes of the request-target it
// reports, which is what decide parsed before and still parses for the
// other adapters.
func FuzzNginxTarget(f *testing.F) {
	for _, s := range []string{
		"https://app.example.com/items?page=2", "http://app.example.com", "http://h/a?", "http://h//x/y", "http://h/%2e%2E/x",
		"http://h/a%20b?c=%zz", "http://h/a b", "https://h:8443/%E2%82%AC?x#y", "http://h/a;b=c", "http://[::1]:80/p", "HTTP://H/P",
		"http://h/a/%2F/b", "http://h/?", "http://h?q", "http://h/a\x7f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/auth/forward/nginx", nil)
		r.Header["X-Original-Url"] = []string{raw}
		fw, ok := fromNginx(r)
		if !ok {
			return
		}
		got := fw.target
		want, err := url.ParseRequestURI(fw.uri)
		if err != nil || want.Host != "" || want.Scheme != "" {
			t.Fatalf("%q: the adapter accepted target %q, which decide used to refuse (%v, host %q, scheme %q)", raw, fw.uri, err, want.Host, want.Scheme)
		}
		if got.Scheme != "" || got.Host != "" || got.User != nil || got.Opaque != "" || got.Fragment != "" || got.RawFragment != "" {
			t.Fatalf("%q: the adapter's URL has more than a path and query: %#v", raw, got)
		}
		if got.Path != want.Path || got.RawPath != want.RawPath || got.EscapedPath() != want.EscapedPath() ||
			got.RawQuery != want.RawQuery || got.ForceQuery != want.ForceQuery || got.RequestURI() != fw.uri {
			t.Fatalf("%q: the adapter's URL %#v differs from ParseRequestURI(%q) = %#v", raw, got, fw.uri, want)
		}
	})
}
