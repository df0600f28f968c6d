package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/gateway"
)

func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1#y", "//evil.com", `/\evil.com`, "https://evil.com", "/%2F%2Fevil.com",
		"/%252F/evil.com", "/%5C", "javascript:alert(1)", "/\t/evil", "/%09/x", "/%", "/a/../..//b", "/@evil.com", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got := gateway.SafeReturnTo(target)
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

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Basic abc", "Bearer", "Bearer ", "Bearer a b", "Bearer \x00", "BEARER tok"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := gateway.BearerToken(header)
		if !ok {
			if token != "" {
				t.Fatalf("refused header %q returned token %q", header, token)
			}
			return
		}
		if token == "" || strings.ContainsAny(token, " \t\r\n") || !utf8.ValidString(token) {
			t.Fatalf("BearerToken(%q) = %q", header, token)
		}
		if !strings.EqualFold(header[:7], "bearer ") || !strings.HasSuffix(header, " "+token) {
			t.Fatalf("BearerToken(%q) = %q does not come from the header", header, token)
		}
	})
}

func FuzzReadLogin(f *testing.F) {
	f.Add("application/json", `{"username":"alice","password":"pw","remember":true,"return_to":"/x"}`)
	f.Add("application/json; charset=utf-8", `{"username":"a"}`)
	f.Add("application/x-www-form-urlencoded", "username=alice&password=pw&remember=on")
	f.Add("application/x-www-form-urlencoded", "username=%zz")
	f.Add("text/plain", "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		r := httptest.NewRequest(http.MethodPost, "/auth/login", strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		req, _, err := gateway.ReadLogin(httptest.NewRecorder(), r)
		if err != nil {
			if s := gateway.InputErrorStatus(err); s < 400 || s > 499 {
				t.Fatalf("error %v has status %d, want a 4xx", err, s)
			}
			return
		}
		switch {
		case req.Username == "" || req.Password == "":
			t.Fatal("accepted an empty field")
		case len(req.Username) > 256 || len(req.Password) > 1024 || len(req.ReturnTo) > 2048:
			t.Fatal("accepted an oversized field")
		case !utf8.ValidString(req.Username) || strings.ContainsFunc(req.Username, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			t.Fatalf("accepted username %q", req.Username)
		}
	})
}

// FuzzCSPReport: any body either parses into bounded, control-free fields
// or is refused; nothing panics.
func FuzzCSPReport(f *testing.F) {
	f.Add([]byte(`{"csp-report":{"violated-directive":"script-src-attr","blocked-uri":"inline","script-sample":"a\nb"}}`))
	f.Add([]byte(`[{"type":"csp-violation","body":{"effectiveDirective":"script-src-elem","blockedURL":"inline"}}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"csp-report":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		violations, ok := gateway.ParseCSPReports(body)
		if ok != (len(violations) > 0) {
			t.Fatalf("ok %v with %d violations", ok, len(violations))
		}
		for _, fields := range violations {
			for _, s := range fields {
				if len(s) > 256*3 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) || !utf8.ValidString(s) {
					t.Fatalf("field %q is not bounded, clean UTF-8", s)
				}
			}
		}
	})
}
