package oidcbff

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzJWTType: any input either yields the typ of a JSON header or an
// error wrapping errBadLogout; a header built from typ reads back as typ.
func FuzzJWTType(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiIsInR5cCI6ImxvZ291dCtqd3QifQ.e30.sig", "logout+jwt")
	f.Add("garbage", "JWT")
	f.Add(".", "")
	f.Fuzz(func(t *testing.T, raw, typ string) {
		if _, err := jwtType(raw); err != nil && !errors.Is(err, errBadLogout) {
			t.Fatalf("error %v does not wrap errBadLogout", err)
		}
		h, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": typ})
		if len(h) > 700 || !utf8.ValidString(typ) {
			return // beyond the header bound, or not a string JSON keeps as is
		}
		got, err := jwtType(base64.RawURLEncoding.EncodeToString(h) + ".e30.sig")
		if err != nil || got != typ {
			t.Fatalf("typ %q read back as %q, %v", typ, got, err)
		}
	})
}

// FuzzIdentity: claims from a provider either map to an identity whose
// values are safe in a header (no control characters, no surrounding
// spaces, groups without commas) under "{provider}:", or are refused.
func FuzzIdentity(f *testing.F) {
	f.Add(`{"sub":"alice","email":"a@example.com","groups":["staff","dev"],"name":"Alice"}`)
	f.Add(`{"sub":"x\u0000y","groups":"one"}`)
	f.Add(`{"sub":12345,"groups":[1,2]}`)
	f.Add(`{"sub":" padded ","email":["a"]}`)
	p := &provider{cfg: ProviderConfig{Name: "corp"}}
	p.cfg.check()
	f.Fuzz(func(t *testing.T, raw string) {
		var claims map[string]any
		if json.Unmarshal([]byte(raw), &claims) != nil {
			return
		}
		id, err := p.identity(claims)
		if err != nil {
			return
		}
		if !strings.HasPrefix(id.User, "corp:") || len(id.User) == len("corp:") || !plainValue(strings.TrimPrefix(id.User, "corp:")) {
			t.Fatalf("user %q", id.User)
		}
		if id.Email != "" && !plainValue(id.Email) {
			t.Fatalf("email %q", id.Email)
		}
		for _, g := range id.Groups {
			if strings.Contains(g, ",") || !plainValue(g) {
				t.Fatalf("group %q", g)
			}
		}
	})
}
