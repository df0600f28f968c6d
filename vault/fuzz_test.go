package vault_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/vault"
)

// FuzzParseCapture: the flag parser accepts only what round-trips, and
// every refusal wraps ErrInvalidConfig.
func FuzzParseCapture(f *testing.F) {
	for _, s := range []string{"POST /api/users/login user.token", "PUT /api/{id} data.0.jwt", "GET /x a", "POST /x", "", "POST /a?b c", "POST /{a}/{a} t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := vault.ParseCapture(s)
		if err != nil {
			if !errors.Is(err, vault.ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if !strings.HasPrefix(c.Path, "/") || c.Method == "" || len(c.Field) == 0 {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		again, err := vault.ParseCapture(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("round trip of %q: %v %q", c.String(), err, again.String())
		}
	})
}

// FuzzRewriteBody: on any body, the walker never panics; on valid JSON,
// replacing or dropping the configured fields keeps it valid JSON and
// removes those strings, and the leak guard leaves neither the literal
// token nor a JWT-shaped string, in the bytes or in the strings they
// decode to, and keeps valid JSON valid.
func FuzzRewriteBody(f *testing.F) {
	f.Add([]byte(`{"user":{"email":"a@b","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}}`), "tokVAULTED1")
	f.Add([]byte(`{"user":{"token":"tokVAULTED1"},"list":[1,"x",{"token":null}]}`), "tokVAULTED1")
	f.Add([]byte(`[{"user":{"token":"a"}},{"user":{"token":"b"}}]`), "tok")
	f.Add([]byte(`{"a":"\u0065yJ\"x","user":{"token":"\"quoted\"","x":1}}`), "tokZZZZZZ")
	f.Add([]byte(`{"a":"\u0065yJhbGciOiJIUzI1NiJ9\u002eeyJzdWIiOiIxIn0.c2ln","b":["tok\u0056AULTED1","%22eyJhbGciOiJ.eyJzdWIiOiIx."]}`), "tokVAULTED1")
	p, err := vault.ParseJSONPath("user.token")
	if err != nil {
		f.Fatal(err)
	}
	wanted := []vault.JSONPath{p}
	f.Fuzz(func(t *testing.T, body []byte, literal string) {
		_, err := vault.FindStrings(body, wanted)
		valid := json.Valid(body)
		if err != nil {
			// Refused as uncheckable: nested deeper than 512 levels, or
			// user.token given twice.
			if valid && !errors.Is(err, vault.ErrUncheckable) {
				t.Fatalf("valid JSON refused: %v", err)
			}
			return
		}
		if valid {
			_, hadString := tokenAt(body)
			replaced, dropped := rewrites(t, body, wanted)
			if !json.Valid(replaced) || !json.Valid(dropped) {
				t.Fatalf("rewrite of %q gave invalid JSON %q / %q", body, replaced, dropped)
			}
			if v, ok := tokenAt(replaced); hadString && (!ok || v != "P") {
				t.Fatalf("replace left %q in %q", v, replaced)
			}
			if v, ok := tokenAt(dropped); hadString && ok {
				t.Fatalf("drop left %q in %q", v, dropped)
			}
		}
		// Real tokens are base64url and dots; "tok" cannot occur outside a
		// JSON string.
		if len(literal) < 8 || !strings.HasPrefix(literal, "tok") || strings.ContainsFunc(literal, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			literal = "tokLITERAL1"
		}
		out, n := vault.GuardLeaks(body, []byte(literal))
		if bytes.Contains(out, []byte(literal)) {
			t.Fatalf("literal token left in %q", out)
		}
		if again, m := vault.GuardLeaks(out, []byte(literal)); m != 0 || !bytes.Equal(again, out) {
			t.Fatalf("guard output %q still holds %d tokens", out, m)
		}
		if n == 0 && !bytes.Equal(out, body) {
			t.Fatal("body changed without a leak counted")
		}
		if valid && !json.Valid(out) {
			t.Fatalf("guard broke valid JSON: %q -> %q", body, out)
		}
		if valid {
			// What the browser's JSON.parse makes of it holds none either.
			for _, s := range jsonStrings(t, string(out)) {
				if vault.HoldsToken(s, literal) {
					t.Fatalf("guard output %q decodes to %q", out, s)
				}
			}
		}
	})
}

func rewrites(t *testing.T, body []byte, wanted []vault.JSONPath) (replaced, dropped []byte) {
	var err error
	if replaced, err = vault.ReplacePaths(body, wanted, `"P"`); err != nil {
		t.Fatal(err)
	}
	dropped, err = vault.DropPaths(body, wanted)
	if err != nil {
		t.Fatal(err)
	}
	return replaced, dropped
}

// tokenAt returns the string at user.token, if there is one.
func tokenAt(body []byte) (string, bool) {
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		return "", false
	}
	user, _ := v["user"].(map[string]any)
	tok, ok := user["token"].(string)
	return tok, ok
}

// FuzzUserFromToken: whatever the upstream answers, the user taken from
// it is a plain, bounded value or an ErrNoUser.
func FuzzUserFromToken(f *testing.F) {
	b := newJWTBackend()
	f.Add(b.sign(&backendUser{ID: 7, Username: "u"}), "id")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiIgeCJ9.", "sub")
	f.Add("a.e30.b", "sub")
	f.Fuzz(func(t *testing.T, token, claim string) {
		user, err := vault.UserFromToken(token, claim)
		if err != nil {
			if !errors.Is(err, vault.ErrNoUser) {
				t.Fatalf("error %v does not wrap ErrNoUser", err)
			}
			return
		}
		if user == "" || len(user) > 256 || strings.TrimSpace(user) != user || strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted user %q", user)
		}
	})
}
