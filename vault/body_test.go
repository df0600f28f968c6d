package vault_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/vault"
)

func paths(t *testing.T, ss ...string) []vault.JSONPath {
	t.Helper()
	var out []vault.JSONPath
	for _, s := range ss {
		p, err := vault.ParseJSONPath(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestReplaceAndDropKeepEveryOtherByte(t *testing.T) {
	p := paths(t, "user.token", "list.1.jwt")
	for _, c := range []struct{ in, replaced, dropped string }{
		{`{"user":{"a":1,"token":"T","b":"x"}}`, `{"user":{"a":1,"token":"P","b":"x"}}`, `{"user":{"a":1,"b":"x"}}`},
		{`{"user":{"token":"T"}}`, `{"user":{"token":"P"}}`, `{"user":{}}`},
		{`{"user":{"token" : "T" ,  "b":2}}`, `{"user":{"token" : "P" ,  "b":2}}`, `{"user":{"b":2}}`},
		{`{"user": {"b": 2, "token": "T"}}`, `{"user": {"b": 2, "token": "P"}}`, `{"user": {"b": 2}}`},
		{`{"list":[{"jwt":"x"},{"jwt":"T","k":"\"token\""}],"token":"not at the path"}`,
			`{"list":[{"jwt":"x"},{"jwt":"P","k":"\"token\""}],"token":"not at the path"}`,
			`{"list":[{"jwt":"x"},{"k":"\"token\""}],"token":"not at the path"}`},
		{`{"user":{"a":1,"token":"T"},"list":[0,{"jwt":"T"}]}`, `{"user":{"a":1,"token":"P"},"list":[0,{"jwt":"P"}]}`, `{"user":{"a":1},"list":[0,{}]}`},
		{`{"user":{"token":"T"},"user2":{"token":"T"}}`, `{"user":{"token":"P"},"user2":{"token":"T"}}`, `{"user":{},"user2":{"token":"T"}}`},
		{`{"user":{"token":{"nested":"T"}}}`, `{"user":{"token":{"nested":"T"}}}`, `{"user":{"token":{"nested":"T"}}}`},
	} {
		got, err := vault.ReplacePaths([]byte(c.in), p, `"P"`)
		if err != nil || string(got) != c.replaced {
			t.Errorf("replace %s:\n got %s %v\nwant %s", c.in, got, err, c.replaced)
		}
		got, err = vault.DropPaths([]byte(c.in), p)
		if err != nil || string(got) != c.dropped {
			t.Errorf("drop %s:\n got %s %v\nwant %s", c.in, got, err, c.dropped)
		}
	}
	if _, err := vault.FindStrings([]byte(`{"user":`), p); err == nil {
		t.Error("truncated JSON accepted")
	}
}

func TestGuardLeaks(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
	for _, c := range []struct {
		in, want string
		n        int
	}{
		{`{"a":"` + jwt + `"}`, `{"a":"` + vault.Redacted + `"}`, 1},
		{`{"a":"Bearer ` + jwt + `","b":"` + jwt + `"}`, `{"a":"Bearer ` + vault.Redacted + `","b":"` + vault.Redacted + `"}`, 2},
		{`{"a":"monkeyJump.x.y","b":"eyJshort.x.y","c":"eyJhbGciOiJIUzI1NiJ9 alone"}`, `{"a":"monkeyJump.x.y","b":"eyJshort.x.y","c":"eyJhbGciOiJIUzI1NiJ9 alone"}`, 0},
		{`{"a":"eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."}`, `{"a":"` + vault.Redacted + `"}`, 1}, // alg none: empty signature
		{`{"opaque":"tok-vaulted-opaque-123"}`, `{"opaque":"` + vault.Redacted + `"}`, 1},
	} {
		got, n := vault.GuardLeaks([]byte(c.in), []byte("tok-vaulted-opaque-123"))
		if string(got) != c.want || n != c.n {
			t.Errorf("guard %s:\n got %s (%d)\nwant %s (%d)", c.in, got, n, c.want, c.n)
		}
	}
}

func TestUserFromToken(t *testing.T) {
	b := newJWTBackend()
	tok := b.sign(&backendUser{ID: 42, Username: "max"})
	for claim, want := range map[string]string{"id": "42", "username": "max"} {
		if got, err := vault.UserFromToken(tok, claim); err != nil || got != want {
			t.Errorf("claim %s: %q %v", claim, got, err)
		}
	}
	for _, bad := range []string{"", "opaque", "a.b", "a.!!!.c", "a.eyJ9.c", tok + ".x"} {
		if _, err := vault.UserFromToken(bad, "id"); !errors.Is(err, vault.ErrNoUser) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := vault.UserFromToken(tok, "missing"); !errors.Is(err, vault.ErrNoUser) {
		t.Errorf("missing claim: %v", err)
	}
}

func TestParseSpecs(t *testing.T) {
	c, err := vault.ParseCapture("POST /api/users/login user.token")
	if err != nil || c.Method != "POST" || c.Path != "/api/users/login" || c.Field.String() != "user.token" || c.String() != "POST /api/users/login user.token" {
		t.Fatalf("ParseCapture: %+v %v", c, err)
	}
	if _, err := vault.ParseCapture("POST /api/{id}/refresh data.0.jwt"); err != nil {
		t.Fatalf("wildcard capture: %v", err)
	}
	for _, bad := range []string{"", "POST /x", "/x user.token", "POST x user.token", "POST /x user..token", "POST /x?q=1 t", "P@ST /x t", "POST /x t extra", "POST /{a}/{a} t"} {
		if _, err := vault.ParseCapture(bad); !errors.Is(err, vault.ErrInvalidConfig) {
			t.Errorf("ParseCapture(%q) = %v", bad, err)
		}
	}
	h, s, none, err := vault.ParseHeader("authorization: Token")
	if err != nil || h != "Authorization" || s != "Token" || none {
		t.Fatalf("ParseHeader: %q %q %v %v", h, s, none, err)
	}
	if h, s, none, err = vault.ParseHeader("X-Access-Token:"); err != nil || h != "X-Access-Token" || s != "" || !none {
		t.Fatalf("bare header: %q %q %v %v", h, s, none, err)
	}
	for _, bad := range []string{"Authorization", ": Token", "Authorization: Two words", "Bad Header: x"} {
		if _, _, _, err := vault.ParseHeader(bad); !errors.Is(err, vault.ErrInvalidConfig) {
			t.Errorf("ParseHeader(%q) = %v", bad, err)
		}
	}
}

func TestStripValues(t *testing.T) {
	for in, want := range map[string]string{
		"a=1&access_token=x&b=2":   "a=1&b=2",
		"ACCESS_TOKEN=x":           "",
		"access%5ftoken=x&a=%20":   "a=%20",
		"a=1;token=x&b=2":          "b=2",
		"a=1&b=access_token":       "a=1&b=access_token",
		"tokens=1&my_access_token": "tokens=1&my_access_token",
	} {
		if got, _ := vault.StripValues(in, "access_token", "token"); got != want {
			t.Errorf("strip %q = %q, want %q", in, got, want)
		}
	}
	if !strings.Contains(vault.Redacted, " ") {
		t.Fatal("the redaction marker must not look like a token")
	}
}

func TestDeleteHeaderVariants(t *testing.T) {
	h := http.Header{"X-Access-Token": {"a"}, "X_access_token": {"b"}, "x-ACCESS_token": {"c"}, "X-Access-Tokens": {"keep"}, "Other": {"keep"}}
	vault.DeleteHeader(h, "X-Access-Token")
	if len(h) != 2 || h.Get("Other") != "keep" || h.Get("X-Access-Tokens") != "keep" {
		t.Fatalf("after delete: %v", h)
	}
}

// TestTooManyTokenPaths: the answers' walk follows at most 64 token paths
// at once, so a route with more is refused at start.
func TestTooManyTokenPaths(t *testing.T) {
	route := defaultRoute()
	for i := range 64 { // with user.token, the capture field
		route.TokenPaths = append(route.TokenPaths, paths(t, fmt.Sprintf("data.t%d", i))...)
	}
	_, err := vault.New(vault.Config{Admission: newStack(t, stackOptions{}).vault.Admission(), Sealer: testKeys(t), Routes: []vault.Route{route}})
	if !errors.Is(err, vault.ErrInvalidConfig) || !strings.Contains(err.Error(), "more than 64 token paths") {
		t.Fatalf("65 token paths: %v", err)
	}
	route.TokenPaths = route.TokenPaths[1:]
	if _, err := vault.New(vault.Config{Admission: newStack(t, stackOptions{}).vault.Admission(), Sealer: testKeys(t), Routes: []vault.Route{route}}); err != nil {
		t.Fatalf("64 token paths: %v", err)
	}
}
