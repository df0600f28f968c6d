package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/gateway"
)

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
