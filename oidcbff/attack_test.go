package oidcbff_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloakroom/cloakroom/internal/testoidc"
	"github.com/cloakroom/cloakroom/oidcbff"
)

// refused checks that a callback was answered with a page, no redirect and
// no session, and that the audit log gives reason.
func (e *env) refused(b *browser, r response, status int, reason string) {
	e.t.Helper()
	if r.Status != status || r.Header.Get("Location") != "" {
		e.t.Fatalf("callback: status %d, Location %q, want %d and a page: %s", r.Status, r.Header.Get("Location"), status, r.Text)
	}
	if b.sessionCookie() != "" {
		e.t.Fatal("a refused callback started a session")
	}
	if !strings.Contains(e.logs.String(), reason) {
		e.t.Fatalf("the log does not give the reason %q:\n%s", reason, e.logs.String())
	}
	if b.fetch(http.MethodGet, "/auth/session").Status != http.StatusUnauthorized {
		e.t.Fatal("the browser is logged in after a refused callback")
	}
	if len(e.p.tokens.all()) > 0 {
		// Refusals are logged with their reason, never with the tokens.
		e.assertNoTokens(nil, b)
	}
}

// TestCallbackRefusesForgedState: a callback whose state does not match the
// browser's pre-login cookie, one without the cookie (login CSRF: an
// attacker's code pushed into the victim's browser) and a replayed one are
// refused.
func TestCallbackRefusesForgedState(t *testing.T) {
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
			b := e.browser(e.nodes[0])
			callback := e.p.login(t, b, b.startLogin(""))
			u, _ := url.Parse(callback)
			q := u.Query()
			q.Set("state", "forged-"+q.Get("state"))
			forged := *u
			forged.RawQuery = q.Encode()
			e.refused(b, b.get(forged.String()), http.StatusBadRequest, "state does not match the pre-login cookie")

			// The attacker's own completed login, opened in the victim's
			// browser, which has no pre-login cookie.
			attacker := e.browser(e.nodes[0])
			attackerCallback := e.p.login(t, attacker, attacker.startLogin(""))
			victim := e.browser(e.nodes[0])
			e.refused(victim, victim.get(attackerCallback), http.StatusBadRequest, "no pre-login cookie")

			// The real login completes once; the same callback again fails.
			real := e.browser(e.nodes[0])
			cb := e.p.login(t, real, real.startLogin(""))
			if r := real.get(cb); r.Status != http.StatusSeeOther {
				t.Fatalf("genuine callback: %d %s", r.Status, r.Text)
			}
			replay := e.browser(e.nodes[0])
			e.refused(replay, replay.get(cb), http.StatusBadRequest, "no pre-login cookie")
		})
	}
}

// TestCallbackRefusesWrongNonce: an ID token minted for another login (its
// nonce is not the one in the browser's pre-login cookie) is refused.
func TestCallbackRefusesWrongNonce(t *testing.T) {
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
			e.p.rewrite.Store(ptr(func(q url.Values) { q.Set("nonce", "nonce-of-another-login") }))
			b := e.browser(e.nodes[0])
			e.refused(b, b.login(), http.StatusBadRequest, "id token nonce does not match")
		})
	}
}

// TestCallbackRefusesInjectedCode is the attack PKCE stops: a code stolen
// from the victim's redirect is replayed by the attacker in their own
// browser, with their own valid state. The provider refuses it because the
// attacker's code_verifier does not match the victim's challenge.
func TestCallbackRefusesInjectedCode(t *testing.T) {
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
			victim := e.browser(e.nodes[0])
			stolen, _ := url.Parse(e.p.login(t, victim, victim.startLogin("")))

			attacker := e.browser(e.nodes[0])
			own, _ := url.Parse(attacker.startLogin(""))
			injected := e.nodes[0].srv.URL + "/auth/callback/" + pc.name + "?" + url.Values{
				"code": {stolen.Query().Get("code")}, "state": {own.Query().Get("state")},
			}.Encode()
			e.refused(attacker, attacker.get(injected), http.StatusBadRequest, "token endpoint refused the code")
		})
	}
}

// TestCallbackRefusesTamperedIDToken: an ID token with a changed claim,
// one signed by another key, one with "alg":"none", and (where the
// provider sends at_hash) an access token swapped for another are refused.
func TestCallbackRefusesTamperedIDToken(t *testing.T) {
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tampers := map[string]func(v map[string]any){
		"changed sub": func(v map[string]any) {
			v["id_token"] = editPayload(v["id_token"].(string), func(c map[string]any) { c["sub"] = "admin" })
		},
		"other key": func(v map[string]any) {
			parts := strings.Split(v["id_token"].(string), ".")
			var claims jwt.MapClaims
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			json.Unmarshal(payload, &claims)
			var header map[string]any
			h, _ := base64.RawURLEncoding.DecodeString(parts[0])
			json.Unmarshal(h, &header)
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
			tok.Header["kid"] = header["kid"]
			v["id_token"], _ = tok.SignedString(otherKey)
		},
		"alg none": func(v map[string]any) {
			parts := strings.Split(v["id_token"].(string), ".")
			v["id_token"] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
		},
		"no id token": func(v map[string]any) { delete(v, "id_token") },
	}
	for _, pc := range providerCases(t) {
		for name, tamper := range tampers {
			t.Run(pc.name+"/"+name, func(t *testing.T) {
				e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
				e.p.tamper.Store(ptr(tamper))
				b := e.browser(e.nodes[0])
				reason := "id token"
				if name == "no id token" {
					reason = "token response has no id_token"
				}
				e.refused(b, b.login(), http.StatusBadRequest, reason)
			})
		}
	}
	t.Run("zitadel/at_hash", func(t *testing.T) {
		zc := providerCases(t)[1]
		e := newEnv(t, 1, func(urls []string) *provider { return zc.start(t, urls) })
		e.p.tamper.Store(ptr(func(v map[string]any) { v["access_token"] = "swapped-" + v["access_token"].(string) }))
		b := e.browser(e.nodes[0])
		e.refused(b, b.login(), http.StatusBadRequest, "at_hash does not match")
	})
}

// editPayload changes a JWT's claims and keeps its (now wrong) signature.
func editPayload(token string, edit func(map[string]any)) string {
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	json.Unmarshal(payload, &claims)
	edit(claims)
	b, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// TestAccessLimits: sign-in can be limited by email domain (the email must
// not be marked unverified), by group and by a claim value. A refused user
// gets a 403 page saying why, with the sign-in buttons, no session and no
// redirect: no loop.
func TestAccessLimits(t *testing.T) {
	type limit struct {
		name    string
		set     func(p *oidcbff.ProviderConfig)
		allowed bool
	}
	byProvider := map[string][]limit{
		"mock": {
			{"domain allowed", func(p *oidcbff.ProviderConfig) { p.AllowedDomains = []string{"Example.COM"} }, true},
			{"domain refused", func(p *oidcbff.ProviderConfig) { p.AllowedDomains = []string{"example.org"} }, false},
			{"group allowed", func(p *oidcbff.ProviderConfig) { p.AllowedGroups = []string{"admins", "staff"} }, true},
			{"group refused", func(p *oidcbff.ProviderConfig) { p.AllowedGroups = []string{"admins"} }, false},
			{"claim allowed", func(p *oidcbff.ProviderConfig) { p.RequiredClaims = map[string]string{"groups": "dev"} }, true},
			{"claim refused", func(p *oidcbff.ProviderConfig) { p.RequiredClaims = map[string]string{"preferred_username": "root"} }, false},
		},
		"zitadel": {
			{"domain allowed", func(p *oidcbff.ProviderConfig) { p.AllowedDomains = []string{"zitadel.ch"} }, true},
			{"domain refused", func(p *oidcbff.ProviderConfig) { p.AllowedDomains = []string{"example.com"} }, false},
			{"group refused", func(p *oidcbff.ProviderConfig) { p.AllowedGroups = []string{"admins"} }, false},
		},
	}
	for _, pc := range providerCases(t) {
		for _, l := range byProvider[pc.name] {
			t.Run(pc.name+"/"+l.name, func(t *testing.T) {
				e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) },
					func(c *oidcbff.Config) { l.set(&c.Providers[0]) })
				b := e.browser(e.nodes[0])
				r := b.login()
				if l.allowed {
					if r.Status != http.StatusSeeOther || b.sessionCookie() == "" {
						t.Fatalf("allowed user refused: %d %s", r.Status, r.Text)
					}
					return
				}
				e.refused(b, r, http.StatusForbidden, `"outcome":"refused"`)
				if !strings.Contains(r.Text, "is not allowed to use this application") || !strings.Contains(r.Text, `id="login-`+pc.name+`"`) {
					t.Fatalf("the refusal page does not explain or offer sign-in:\n%s", r.Text)
				}
			})
		}
	}
	t.Run("mock/unverified email", func(t *testing.T) {
		e := newEnv(t, 1, func(urls []string) *provider { return newMockProvider(t).provider },
			func(c *oidcbff.Config) { c.Providers[0].AllowedDomains = []string{"example.com"} })
		mock := e.p.mock
		e.p.authorize.Store(ptr(func(url.Values) {
			mock.m.Queue(testoidc.User{Subject: "eve", Email: "eve@example.com", Unverified: true})
		}))
		b := e.browser(e.nodes[0])
		e.refused(b, b.login(), http.StatusForbidden, "email not verified by the provider")
	})
}

// TestUnknownProvider: every endpoint answers 404 for a provider that is
// not configured, and logs no client-chosen name.
func TestUnknownProvider(t *testing.T) {
	e := newEnv(t, 1, func([]string) *provider { return newMockProvider(t).provider })
	b := e.browser(e.nodes[0])
	for _, path := range []string{"/auth/login/evil%0Aname", "/auth/callback/evil%0Aname?code=x&state=y"} {
		if r := b.get(path); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d", path, r.Status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.nodes[0].srv.URL+"/auth/backchannel-logout/evil", strings.NewReader("logout_token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.nodes[0].srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("back-channel logout: %d", resp.StatusCode)
	}
	if strings.Contains(e.logs.String(), "evil") {
		t.Error("a client-chosen provider name reached the log")
	}
}
