package oidcbff_test

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloakroom/cloakroom/oidcbff"
)

// subOf is the provider's sub of the user who signs in.
var subOf = map[string]string{"mock": "alice-sub", "zitadel": zitadelUserID}

// logoutForm posts the logout form as the account page's button does.
func (b *browser) logoutForm() response {
	b.e.t.Helper()
	csrf := b.fetch(http.MethodGet, "/auth/session").json(b.e.t)["csrf_token"].(string)
	return b.do(http.MethodPost, "/auth/logout", strings.NewReader(url.Values{"csrf_token": {csrf}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
}

// TestRPInitiatedLogout: logout ends the local session and deletes the
// provider's tokens; when the provider has an end_session_endpoint (the
// zitadel OP does, mockoidc does not) the browser is sent there with
// id_token_hint and post_logout_redirect_uri, and comes back to the login
// page. The ID token in that one redirect is the only token the browser
// ever sees; a script's logout gets the URL without it.
func TestRPInitiatedLogout(t *testing.T) {
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
			b := e.browser(e.nodes[0])
			b.mustLogin()
			sessions, records := e.store.Len(), e.store.AuxLen()
			r := b.logoutForm()
			if r.Status != http.StatusSeeOther {
				t.Fatalf("logout: %d %s", r.Status, r.Text)
			}
			if b.fetch(http.MethodGet, "/auth/session").Status != http.StatusUnauthorized {
				t.Fatal("the session survived logout")
			}
			if got, gotRecords := e.store.Len(), e.store.AuxLen(); got != sessions-1 || gotRecords != records-1 {
				t.Errorf("store holds %d sessions and %d records after logout, had %d and %d: the session and its tokens must both go", got, gotRecords, sessions, records)
			}
			loc := r.Header.Get("Location")
			if pc.name == "mock" {
				if loc != "/auth/login?ended=logout" {
					t.Fatalf("logout without end_session_endpoint went to %q", loc)
				}
				e.assertNoTokens(nil, b)
				return
			}
			end, err := url.Parse(loc)
			if err != nil || !strings.HasPrefix(loc, e.p.issuer+"end_session?") {
				t.Fatalf("logout went to %q, want the provider's end_session_endpoint", loc)
			}
			q := end.Query()
			idToken := q.Get("id_token_hint")
			if !contains(e.p.tokens.all(), idToken) || q.Get("post_logout_redirect_uri") != e.nodes[0].srv.URL+"/auth/login" || q.Get("client_id") != e.p.clientID {
				t.Fatalf("end-session parameters: %v", q)
			}
			back := b.get(loc)
			if resolve(t, back) != e.nodes[0].srv.URL+"/auth/login" {
				t.Fatalf("the provider sent the browser to %q", back.Header.Get("Location"))
			}
			if page := b.get(resolve(t, back)); page.Status != http.StatusOK || !strings.Contains(page.Text, `id="login-zitadel"`) {
				t.Fatalf("back at the login page: %d", page.Status)
			}
			e.assertNoTokens(func(r response, tok string) bool {
				return tok == idToken && r.URL == e.nodes[0].srv.URL+"/auth/logout" && r.Header.Get("Location") == loc
			}, b)

			// A script's logout: the URL comes back as JSON, without the
			// ID token.
			s := e.browser(e.nodes[0])
			s.mustLogin()
			csrf := s.fetch(http.MethodGet, "/auth/session").json(t)["csrf_token"].(string)
			j := s.do(http.MethodPost, "/auth/logout", nil, "Sec-Fetch-Mode", "cors", "Accept", "application/json", "X-CSRF-Token", csrf)
			if j.Status != http.StatusOK {
				t.Fatalf("script logout: %d %s", j.Status, j.Text)
			}
			u, _ := url.Parse(j.json(t)["logout_url"].(string))
			if u.Query().Has("id_token_hint") || u.Query().Get("client_id") != e.p.clientID {
				t.Fatalf("script logout URL %s", u)
			}
			e.assertNoTokens(nil, s)
		})
	}
}

// backchannel posts a logout token to a node.
func (e *env) backchannel(nd *node, body string, contentType string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, nd.srv.URL+"/auth/backchannel-logout/"+e.p.name, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := nd.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *env) logoutToken(token string) int {
	e.t.Helper()
	return e.backchannel(e.nodes[len(e.nodes)-1], url.Values{"logout_token": {token}}.Encode(), "application/x-www-form-urlencoded")
}

// alive reports whether b's session works on every node, or on none; mixed
// answers fail the test.
func (e *env) alive(b *browser) bool {
	e.t.Helper()
	var live, dead int
	for _, nd := range e.nodes {
		switch s := b.on(nd).fetch(http.MethodGet, "/plain/x").Status; s {
		case http.StatusOK:
			live++
		case http.StatusUnauthorized:
			dead++
		default:
			e.t.Fatalf("status %d", s)
		}
	}
	if live > 0 && dead > 0 {
		e.t.Fatalf("the session works on %d nodes and not on %d", live, dead)
	}
	return live > 0
}

// TestBackchannelLogout: a logout token with a sid ends the sessions that
// provider session started, on every node; one with only the sub ends all
// of the user's sessions. A replayed token is refused.
func TestBackchannelLogout(t *testing.T) {
	for _, store := range []string{"memstore", "redis"} {
		for _, pc := range providerCases(t) {
			t.Run(store+"/"+pc.name, func(t *testing.T) { testBackchannelLogout(t, pc, store) })
		}
	}
}

func testBackchannelLogout(t *testing.T, pc *providerCase, store string) {
	e := newEnvOn(t, 3, func(urls []string) *provider { return pc.start(t, urls) }, stores(t, store), nil)
	pc.setSID("sid-laptop")
	laptop := e.browser(e.nodes[0])
	laptop.mustLogin()
	pc.setSID("sid-phone")
	phone := e.browser(e.nodes[1])
	phone.mustLogin()
	if !e.alive(laptop) || !e.alive(phone) {
		t.Fatal("sessions do not work before logout")
	}

	bySID := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), subOf[pc.name], "sid-laptop"))
	if s := e.logoutToken(bySID); s != http.StatusOK {
		t.Fatalf("logout by sid: %d\n%s", s, e.logs.String())
	}
	if e.alive(laptop) {
		t.Fatal("the laptop's session survived a logout of its sid")
	}
	if !e.alive(phone) {
		t.Fatal("logout of another sid ended the phone's session")
	}
	if s := e.logoutToken(bySID); s != http.StatusBadRequest {
		t.Fatalf("replayed logout token: %d, want 400", s)
	}

	bySub := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), subOf[pc.name], ""))
	if s := e.logoutToken(bySub); s != http.StatusOK {
		t.Fatalf("logout by sub: %d", s)
	}
	if e.alive(phone) {
		t.Fatal("a logout of the sub left a session alive")
	}
	e.assertNoTokens(nil, laptop, phone)
}

// TestBackchannelLogoutOfUntypedTokens: a provider that types its logout
// tokens as nothing (Dex) or as the generic JWT (Keycloak before 25,
// Authentik before 2025.12) ends sessions like one that types them
// logout+jwt, by sid and by sub: the claims tell a logout token apart.
func TestBackchannelLogoutOfUntypedTokens(t *testing.T) {
	for _, typ := range []string{"", "JWT"} {
		t.Run("typ="+typ, func(t *testing.T) {
			pc := providerCases(t)[0]
			e := newEnv(t, 2, func(urls []string) *provider { return pc.start(t, urls) })
			pc.setSID("sid-laptop")
			laptop := e.browser(e.nodes[0])
			laptop.mustLogin()
			pc.setSID("sid-phone")
			phone := e.browser(e.nodes[1])
			phone.mustLogin()
			if s := e.logoutToken(e.p.signLogout(t, typ, e.p.logoutClaims(e.clock.Now(), subOf[pc.name], "sid-laptop"))); s != http.StatusOK {
				t.Fatalf("logout by sid: %d\n%s", s, e.logs.String())
			}
			if e.alive(laptop) || !e.alive(phone) {
				t.Fatalf("after a logout of the laptop's sid: laptop alive %v, phone alive %v", e.alive(laptop), e.alive(phone))
			}
			if s := e.logoutToken(e.p.signLogout(t, typ, e.p.logoutClaims(e.clock.Now(), subOf[pc.name], ""))); s != http.StatusOK {
				t.Fatalf("logout by sub: %d", s)
			}
			if e.alive(phone) {
				t.Fatal("a logout of the sub left the phone's session alive")
			}
		})
	}
}

// TestBackchannelLogoutRefusesBadTokens: every malformed or forged logout
// token gets 400 and ends nothing.
func TestBackchannelLogoutRefusesBadTokens(t *testing.T) {
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 2, func(urls []string) *provider { return pc.start(t, urls) })
			b := e.browser(e.nodes[0])
			b.mustLogin()
			sub := subOf[pc.name]
			now := e.clock.Now()
			signed := func(typ string, edit func(jwt.MapClaims)) string {
				c := e.p.logoutClaims(now, sub, "")
				edit(c)
				return e.p.signLogout(t, typ, c)
			}
			valid := signed("logout+jwt", func(jwt.MapClaims) {})
			parts := strings.Split(valid, ".")
			otherSigned := func() string {
				tok := jwt.NewWithClaims(jwt.SigningMethodRS256, e.p.logoutClaims(now, sub, ""))
				tok.Header["kid"], tok.Header["typ"] = e.p.keyID, "logout+jwt"
				s, _ := tok.SignedString(otherKey)
				return s
			}()
			cases := map[string]string{
				"typ at+jwt":      signed("at+jwt", func(jwt.MapClaims) {}),
				"typ id token":    signed("id_token+jwt", func(jwt.MapClaims) {}),
				"no typ, nonce":   signed("", func(c jwt.MapClaims) { c["nonce"] = "n" }),
				"JWT, no events":  signed("JWT", func(c jwt.MapClaims) { delete(c, "events") }),
				"nonce":           signed("logout+jwt", func(c jwt.MapClaims) { c["nonce"] = "n" }),
				"no events":       signed("logout+jwt", func(c jwt.MapClaims) { delete(c, "events") }),
				"other event":     signed("logout+jwt", func(c jwt.MapClaims) { c["events"] = map[string]any{"urn:other": map[string]any{}} }),
				"other audience":  signed("logout+jwt", func(c jwt.MapClaims) { c["aud"] = "another-client" }),
				"other issuer":    signed("logout+jwt", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
				"old iat":         signed("logout+jwt", func(c jwt.MapClaims) { c["iat"] = now.Add(-10 * time.Minute).Unix() }),
				"future iat":      signed("logout+jwt", func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Minute).Unix() }),
				"expired":         signed("logout+jwt", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }),
				"no jti":          signed("logout+jwt", func(c jwt.MapClaims) { delete(c, "jti") }),
				"no sub nor sid":  signed("logout+jwt", func(c jwt.MapClaims) { delete(c, "sub") }),
				"other key":       otherSigned,
				"changed payload": parts[0] + "." + editPayload(valid, func(c map[string]any) { c["sub"] = "someone-else" })[len(parts[0])+1:],
				"alg none":        "eyJhbGciOiJub25lIiwidHlwIjoibG9nb3V0K2p3dCJ9." + parts[1] + ".",
				"not a JWT":       "garbage",
			}
			for name, token := range cases {
				if s := e.logoutToken(token); s != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400", name, s)
				}
			}
			form := url.Values{"logout_token": {valid, valid}}.Encode()
			if s := e.backchannel(e.nodes[0], form, "application/x-www-form-urlencoded"); s != http.StatusBadRequest {
				t.Errorf("two logout_token fields: %d", s)
			}
			if s := e.backchannel(e.nodes[0], `{"logout_token":"`+valid+`"}`, "application/json"); s != http.StatusBadRequest {
				t.Errorf("JSON body: %d", s)
			}
			if s := e.backchannel(e.nodes[0], "logout_token="+strings.Repeat("a", 20<<10), "application/x-www-form-urlencoded"); s != http.StatusBadRequest && s != http.StatusRequestEntityTooLarge {
				t.Errorf("oversized body: %d", s)
			}
			if !e.alive(b) {
				t.Fatal("a refused logout token ended the session")
			}
			// The valid one still works: nothing above consumed its jti.
			if s := e.logoutToken(valid); s != http.StatusOK || e.alive(b) {
				t.Fatalf("valid logout token: %d", s)
			}
		})
	}
}

// TestBackchannelLogoutBySubWithOtherUserClaim: when users are identified
// by another claim (here the email), a logout token naming only the sub
// still finds them.
func TestBackchannelLogoutBySubWithOtherUserClaim(t *testing.T) {
	e := newEnv(t, 2, func(urls []string) *provider { return providerCases(t)[0].start(t, urls) },
		func(c *oidcbff.Config) { c.Providers[0].UserClaim = "email" })
	b := e.browser(e.nodes[0])
	b.mustLogin()
	if user := b.fetch(http.MethodGet, "/auth/session").json(t)["user"]; user != "mock:alice@example.com" {
		t.Fatalf("user %v", user)
	}
	if s := e.logoutToken(e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "someone-else", ""))); s != http.StatusOK || !e.alive(b) {
		t.Fatalf("a logout of another sub: %d, or it ended this session", s)
	}
	if s := e.logoutToken(e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "alice-sub", ""))); s != http.StatusOK {
		t.Fatalf("logout by sub: %d", s)
	}
	if e.alive(b) {
		t.Fatal("the session survived a logout of its sub")
	}
}

// TestBackchannelLogoutBySubAfterTheUserClaimChanged: users identified by
// their email, which changed at the provider between two logins: the sub
// is the same, so a logout token naming only the sub ends the sessions of
// both user IDs.
func TestBackchannelLogoutBySubAfterTheUserClaimChanged(t *testing.T) {
	e := newEnv(t, 2, func(urls []string) *provider { return providerCases(t)[0].start(t, urls) },
		func(c *oidcbff.Config) { c.Providers[0].UserClaim = "email" })
	old := e.browser(e.nodes[0])
	old.mustLogin()
	e.p.mock.authorize.Store(ptr(func(url.Values) {
		e.p.mock.queue(mockUser{sub: "alice-sub", email: "alice@new.example.com"})
	}))
	renamed := e.browser(e.nodes[1])
	renamed.mustLogin()
	if user := renamed.fetch(http.MethodGet, "/auth/session").json(t)["user"]; user != "mock:alice@new.example.com" {
		t.Fatalf("user %v", user)
	}
	if s := e.logoutToken(e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "alice-sub", ""))); s != http.StatusOK {
		t.Fatalf("logout by sub: %d", s)
	}
	if e.alive(renamed) {
		t.Fatal("the session under the new email survived a logout of its sub")
	}
	if e.alive(old) {
		t.Fatal("the session under the old email survived a logout of its sub")
	}
}

// TestBackchannelLogoutOfAProviderSessionWithManyLogins: without a
// per-user session limit, more logins under one provider session than its
// index keeps must not leave the oldest session out of reach of a logout
// of that sid.
func TestBackchannelLogoutOfAProviderSessionWithManyLogins(t *testing.T) {
	pc := providerCases(t)[0]
	// 65 logins from one address at once: past the callback limit, which
	// is not under test here.
	noCallbackLimit := func(c *oidcbff.Config) { c.CallbackLimit = -1 }
	e := newEnvWith(t, 1, func(urls []string) *provider { return pc.start(t, urls) },
		nil, withSessionCap(-1), noCallbackLimit)
	pc.setSID("sid-shared")
	first := e.browser(e.nodes[0])
	first.mustLogin()
	for range oidcbff.MaxSessionsOfSID {
		e.browser(e.nodes[0]).mustLogin()
	}
	tok := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), subOf[pc.name], "sid-shared"))
	if s := e.logoutToken(tok); s != http.StatusOK {
		t.Fatalf("logout by sid: %d", s)
	}
	if e.alive(first) {
		t.Fatal("the first session of the provider session survived a logout of its sid")
	}
}

// TestBackchannelLogoutOfASIDNamingAnotherSub: a logout token whose sid
// is a session of another sub ends nothing, and leaves that session
// within reach of a later logout of its sid that names its own sub.
func TestBackchannelLogoutOfASIDNamingAnotherSub(t *testing.T) {
	pc := providerCases(t)[0]
	e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) })
	pc.setSID("sid-alice")
	b := e.browser(e.nodes[0])
	b.mustLogin()
	if s := e.logoutToken(e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "someone-else", "sid-alice"))); s != http.StatusOK || !e.alive(b) {
		t.Fatalf("a logout of the sid naming another sub: %d, or it ended this session", s)
	}
	if s := e.logoutToken(e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), subOf[pc.name], "sid-alice"))); s != http.StatusOK {
		t.Fatalf("logout by sid: %d", s)
	}
	if e.alive(b) {
		t.Fatal("the session survived a logout of its sid after one naming another sub")
	}
}
