package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Every endpoint of the gateway's own answers a body over its limit with
// 413 and the code too_large, whichever layer notices: the auth prefix's
// 8 KiB bound, the 4 KiB bound of form bodies, the CSP report's own.
func TestEveryTooLargeBodyIsTooLarge(t *testing.T) {
	e := newEnv(t)
	over := func(n int) string { return "csrf_token=x&pad=" + strings.Repeat("a", n) }
	jsonOver := `{"password":"` + strings.Repeat("a", 9000) + `"}`
	const form, js = "application/x-www-form-urlencoded", "application/json"
	cases := []struct {
		name, method, path, contentType, body string
		loggedIn, page                        bool
	}{
		{"login json", http.MethodPost, "/auth/login", js, jsonOver, false, false},
		{"logout json", http.MethodPost, "/auth/logout", js, jsonOver, true, false},
		{"reauth json", http.MethodPost, "/auth/reauth", js, jsonOver, true, false},
		{"password json", http.MethodPost, "/auth/password", js, jsonOver, true, false},
		// Over the 4 KiB of a form, under the auth prefix's 8 KiB.
		// The logout answers a form with a page, whoever sends it.
		{"logout form, logged in", http.MethodPost, "/auth/logout", form, over(5000), true, true},
		{"logout form, anonymous", http.MethodPost, "/auth/logout", form, over(5000), false, true},
		{"revoke-others form", http.MethodPost, "/auth/sessions/revoke-others", form, over(5000), true, false},
		{"revoke-all form", http.MethodPost, "/auth/sessions/revoke-all", form, over(5000), true, false},
		{"account form", http.MethodPost, "/auth/account/revoke-all", form, over(5000), true, true},
		{"csp report", http.MethodPost, "/auth/csp-report", "application/csp-report", strings.Repeat("a", 17000), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.browser()
			var extra []string
			if c.loggedIn {
				b = e.minted("alice")
				extra = []string{"X-CSRF-Token", b.csrf()}
			}
			r := b.do(c.method, c.path, c.contentType, c.body, extra...)
			if r.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413: %s", r.Status, r.Text)
			}
			if c.page {
				if !strings.Contains(r.Text, "larger than") {
					t.Errorf("page without the reason: %q", r.Text)
				}
				return
			}
			if code := r.json(t)["error"]; code != "too_large" {
				t.Errorf("error %v, want too_large: %s", code, r.Text)
			}
		})
	}
}

// A JSON body of the gateway's own endpoints that repeats a key is refused:
// encoding/json keeps the last value (and matches keys in any case), while
// another reader may keep the first, so the request would mean two things.
func TestJSONBodiesRefuseDuplicateKeys(t *testing.T) {
	e := newEnv(t)
	bodies := map[string]string{
		"same key":           `{"username":"mallory","username":"alice","password":"` + password + `"}`,
		"other case":         `{"username":"mallory","USERNAME":"alice","password":"` + password + `"}`,
		"a bool":             `{"username":"alice","password":"x","remember":true,"remember":false}`,
		"long s folds to s":  `{"username":"alice","password":"x","pa\u017fsword":"y"}`,
		"in a nested object": `{"username":"alice","password":"x","return_to":{"a":1,"a":2}}`,
	}
	for name, body := range bodies {
		t.Run("login/"+name, func(t *testing.T) {
			b := e.browser()
			r := b.do(http.MethodPost, "/auth/login", "application/json", body)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.Status, r.Text)
			}
			v := r.json(t)
			if v["error"] != "bad_request" || !strings.Contains(v["message"].(string), "more than once") {
				t.Errorf("answer %s", r.Text)
			}
			if b.loggedIn() {
				t.Error("a login with a repeated key started a session")
			}
		})
	}
	t.Run("reauth", func(t *testing.T) {
		b := e.minted("alice")
		r := b.do(http.MethodPost, "/auth/reauth", "application/json",
			`{"password":"`+password+`","Password":"wrong"}`, "X-CSRF-Token", b.csrf())
		if r.Status != http.StatusBadRequest || r.json(t)["message"] != `Field "Password" is given more than once.` {
			t.Errorf("status %d: %s", r.Status, r.Text)
		}
	})
	// Forms refused a repeated field already; they still do.
	r := e.browser().postForm("/auth/login", url.Values{"username": {"mallory", "alice"}, "password": {password}})
	if r.Status != http.StatusBadRequest {
		t.Errorf("form with a repeated field: status %d", r.Status)
	}
}

// A JSON body that is valid JSON but not an object is told so, not about
// a field with an empty name.
func TestJSONBodiesMustBeObjects(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{`[]`, `["alice"]`, `"alice"`, `null`, `42`, `true`} {
		for _, path := range []string{"/auth/login", "/auth/reauth"} {
			b := e.browser()
			var extra []string
			if path != "/auth/login" {
				b = e.minted("alice")
				extra = []string{"X-CSRF-Token", b.csrf()}
			}
			r := b.do(http.MethodPost, path, "application/json", body, extra...)
			if r.Status != http.StatusBadRequest {
				t.Errorf("%s %s: status %d, want 400", path, body, r.Status)
				continue
			}
			if v := r.json(t); v["error"] != "bad_request" || v["message"] != "The body must be a JSON object." {
				t.Errorf("%s %s: %s", path, body, r.Text)
			}
		}
	}
}
