package httpx

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
)

func TestPathUnder(t *testing.T) {
	for _, c := range []struct {
		p, prefix string
		want      bool
	}{
		{"/api/x", "/api/", true}, {"/api", "/api/", true}, {"/api/", "/api/", true}, {"/apix", "/api/", false}, {"/ap", "/api/", false},
		{"/assets", "/assets", true}, {"/assets/app.js", "/assets", true}, {"/assets2", "/assets", false}, {"/asset", "/assets", false},
		{"/", "/", true}, {"/x", "/", true}, {"", "/", true},
	} {
		if got := PathUnder(c.p, c.prefix); got != c.want {
			t.Errorf("PathUnder(%q, %q) = %v, want %v", c.p, c.prefix, got, c.want)
		}
	}
}

func TestRemoveCookie(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []string
	}{
		{[]string{"a=1; sess=x; b=2"}, []string{"a=1; b=2"}},
		{[]string{"sess=x", "a=1"}, []string{"a=1"}},
		{[]string{"sess=x; sess=y"}, nil},
		{[]string{"session=x; sess = y"}, []string{"session=x"}},
		{[]string{"a=1"}, []string{"a=1"}},
	} {
		h := http.Header{"Cookie": c.in}
		RemoveCookie(h, "sess")
		got := h["Cookie"]
		if len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] {
			t.Errorf("RemoveCookie(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// RemoveCookie drops exactly the pairs cloakroom.CookieValue reads as the
// cookie: none is left for the session middleware to find, and no other
// cookie is lost.
func TestRemoveCookieAgreesWithCookieValue(t *testing.T) {
	const name = "sess"
	for _, line := range []string{
		"sess=x", " sess=x ", "\tsess=x", "sess =x", "sess= x", " sess = x ", "sess", " sess ", "sess=",
		`sess="x"`, "sessx=1", "xsess=1", "se ss=1", "=sess", "a=sess", "Sess=1",
	} {
		_, err := cloakroom.CookieValue(http.Header{"Cookie": {line}}, name)
		read := err == nil
		h := http.Header{"Cookie": {"a=1; " + line}}
		RemoveCookie(h, name)
		removed := !slices.Equal(h["Cookie"], []string{"a=1; " + strings.TrimSpace(line)})
		if read != removed {
			t.Errorf("pair %q: read by CookieValue %v (%v), removed by RemoveCookie %v", line, read, err, removed)
		}
		if _, err := cloakroom.CookieValue(h, name); !errors.Is(err, cloakroom.ErrNoCookie) {
			t.Errorf("pair %q: CookieValue after RemoveCookie: %v, want ErrNoCookie", line, err)
		}
	}
}

func FuzzPathUnder(f *testing.F) {
	f.Add("/api/x", "/api/")
	f.Add("/assets", "/assets")
	f.Fuzz(func(t *testing.T, p, prefix string) {
		if prefix == "" {
			return // not a prefix anyone configures
		}
		got := PathUnder(p, prefix)
		// Under a prefix means it, or a segment below it.
		if got && p != prefix && p+"/" != prefix && !(len(p) > len(prefix) && p[:len(prefix)] == prefix && (prefix[len(prefix)-1] == '/' || p[len(prefix)] == '/')) {
			t.Fatalf("PathUnder(%q, %q) = true", p, prefix)
		}
	})
}

// cookieName is the session cookie the fuzz target removes.
const cookieName = "__Host-Http-session"

func FuzzRemoveCookie(f *testing.F) {
	f.Add("__Host-Http-session=abc; theme=dark", "")
	f.Add("a=1;__Host-Http-session=x;b=2", "__Host-Http-session=y")
	f.Add(" __Host-Http-session = x ; ;", "c=3")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		h := http.Header{}
		for _, l := range []string{line1, line2} {
			if l != "" {
				h.Add("Cookie", l)
			}
		}
		var want []string
		for _, l := range h["Cookie"] {
			for part := range strings.SplitSeq(l, ";") {
				p := strings.TrimSpace(part)
				name, _, _ := strings.Cut(p, "=")
				if p != "" && strings.TrimSpace(name) != cookieName {
					want = append(want, p)
				}
			}
		}
		RemoveCookie(h, cookieName)
		var got []string
		for _, l := range h["Cookie"] {
			if l == "" {
				t.Fatal("empty Cookie header left")
			}
			for part := range strings.SplitSeq(l, ";") {
				p := strings.TrimSpace(part)
				name, _, _ := strings.Cut(p, "=")
				if strings.TrimSpace(name) == cookieName {
					t.Fatalf("session cookie survived in %q", l)
				}
				if p != "" { // headers without the cookie are left as they came
					got = append(got, p)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("kept %q, want %q", got, want)
		}
		// What the server's own parser sees agrees.
		req := &http.Request{Header: h}
		if _, err := req.Cookie(cookieName); err == nil {
			t.Fatalf("net/http still finds the session cookie in %q", h["Cookie"])
		}
		// And so does the session middleware's.
		if _, err := cloakroom.CookieValue(h, cookieName); !errors.Is(err, cloakroom.ErrNoCookie) && !errors.Is(err, cloakroom.ErrCookieHeaderSize) {
			t.Fatalf("CookieValue after RemoveCookie(%q): %v", h["Cookie"], err)
		}
	})
}

func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1#y", "//evil.com", `/\evil.com`, "https://evil.com", "/%2F%2Fevil.com",
		"/%252F/evil.com", "/%5C", "javascript:alert(1)", "/\t/evil", "/%09/x", "/%", "/a/../..//b", "/@evil.com", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got := SafeReturnTo(target)
		if got != "/" && got != target {
			t.Fatalf("SafeReturnTo(%q) = %q: must be the input or /", target, got)
		}
		// Whatever comes out, every decoding of it is a path on this origin.
		for s, i := got, 0; i < 5; i++ {
			if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\t\r\n\x00") {
				t.Fatalf("SafeReturnTo(%q) = %q, which decodes to %q", target, got, s)
			}
			u, err := url.Parse(s)
			if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
				t.Fatalf("SafeReturnTo(%q) = %q: parses with scheme %q host %q (%v)", target, got, u.Scheme, u.Host, err)
			}
			next, err := url.PathUnescape(s)
			if err != nil || next == s {
				break
			}
			s = next
		}
		// Browsers resolve the Location against the page; the result must
		// stay on the origin.
		base, _ := url.Parse("https://gateway.test/auth/login")
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if res := base.ResolveReference(ref); res.Host != "gateway.test" || res.Scheme != "https" {
			t.Fatalf("SafeReturnTo(%q) = %q resolves to %s", target, got, res)
		}
	})
}

// CleanPath is the one rule for paths the proxy forwards and forward auth
// judges: what it refuses, an upstream could read as another path.
func TestCleanPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/a/b": true, "/a/b/": true, "/a;v=1/b": true, "/caf\u00e9": true,
		"": false, "a": false, "//a": false, "/a//b": false, "/a/./b": false, "/a/../b": false, "/..": false,
		"/a/..;/b": false, "/a/.;/b": false, "/a/..;x=1/b": false, "/a\\b": false, "/a\x00b": false, "/a\x7f": false,
		"/\uff0e\uff0e/b": false, "/a\uff0fb": false, "/\xc0\xae\xc0\xae/b": false, "/a/%2e%2e/b": false, "/a/%2F": false,
	} {
		if got := CleanPath(p); got != want {
			t.Errorf("CleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}
