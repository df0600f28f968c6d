package oidcbff_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/oidcbff"
)

// providerCase starts one of the two provider implementations the tests run
// against, and knows who signs in there.
type providerCase struct {
	name string
	// start runs the provider for the given gateway URLs.
	start func(t *testing.T, urls []string) *provider
	// user is the user ID, email and groups of the one who signs in.
	user, email string
	// setSID makes the next ID tokens carry sid (for back-channel logout).
	setSID func(sid string)
}

// providerCases returns fresh cases: each test gets its own providers.
func providerCases(t *testing.T) []*providerCase {
	var mock *mockProvider
	var zitadel *zitadelProvider
	mc := &providerCase{
		name: "mock", user: "mock:alice-sub", email: "alice@example.com",
		start: func(t *testing.T, _ []string) *provider {
			mock = newMockProvider(t)
			// Every login signs in alice; the queue is refilled per login.
			mock.authorize.Store(ptr(func(url.Values) { mock.queueAlice("") }))
			return mock.provider
		},
	}
	mc.setSID = func(sid string) { mock.authorize.Store(ptr(func(url.Values) { mock.queueAlice(sid) })) }
	zc := &providerCase{
		name: "zitadel", user: "zitadel:" + zitadelUserID, email: zitadelEmail,
		start: func(t *testing.T, urls []string) *provider {
			zitadel = newZitadelProvider(t, urls)
			return zitadel.provider
		},
	}
	zc.setSID = func(sid string) { zitadel.storage.setSID(sid) }
	return []*providerCase{mc, zc}
}

func ptr[T any](v T) *T { return &v }

func (mp *mockProvider) queueAlice(sid string) {
	mp.queue(mockUser{sub: "alice-sub", email: "alice@example.com", groups: []string{"staff", "dev"}, sid: sid})
}

// TestLoginRoundTrip signs in at each provider: the login page offers the
// button, the callback starts a session for "{provider}:{sub}", the API
// gets the identity and (on the relay route only) the access token, and no
// provider token reaches the browser or the log.
func TestLoginRoundTrip(t *testing.T) {
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 1, func(urls []string) *provider { return pc.start(t, urls) },
				func(c *oidcbff.Config) { c.Providers[0].AuthParams = map[string]string{"audience": "https://api.test"} })
			b := e.browser(e.nodes[0])

			page := b.get("/auth/login?return_to=/api/after")
			if !strings.Contains(page.Text, `href="/auth/login/`+pc.name+`?return_to=%2Fapi%2Fafter"`) ||
				!strings.Contains(page.Text, "Sign in with Test "+pc.name) {
				t.Fatalf("login page has no button for %s:\n%s", pc.name, page.Text)
			}

			authURL := b.startLogin("?return_to=/api/after")
			u, _ := url.Parse(authURL)
			q := u.Query()
			if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" {
				t.Fatalf("authorization request lacks PKCE, state or nonce: %s", u.RawQuery)
			}
			if q.Get("audience") != "https://api.test" {
				t.Errorf("the configured auth param is missing: %s", u.RawQuery)
			}
			if q.Get("redirect_uri") != e.nodes[0].srv.URL+"/auth/callback/"+pc.name {
				t.Fatalf("redirect_uri %q", q.Get("redirect_uri"))
			}
			state := b.responses()[len(b.responses())-1].Header.Get("Set-Cookie")
			for _, attr := range []string{oidcbff.StateCookieName + "=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=600"} {
				if !strings.Contains(state, attr) {
					t.Errorf("pre-login cookie %q lacks %s", state, attr)
				}
			}
			if e.store.Len() != 0 {
				t.Errorf("starting a login created %d store records; the pre-login state belongs in the cookie", e.store.Len())
			}
			callback := b.get(e.p.login(t, b, authURL))
			if callback.Status != http.StatusSeeOther || callback.Header.Get("Location") != "/api/after" {
				t.Fatalf("callback: status %d, Location %q: %s", callback.Status, callback.Header.Get("Location"), callback.Text)
			}
			if !strings.Contains(strings.Join(callback.Header.Values("Set-Cookie"), "\n"), oidcbff.StateCookieName+"=; Path=/; Max-Age=0") {
				t.Errorf("the callback did not expire the pre-login cookie: %q", callback.Header.Values("Set-Cookie"))
			}

			info := b.fetch(http.MethodGet, "/auth/session").json(t)
			if info["user"] != pc.user || info["email"] != pc.email {
				t.Fatalf("session: %v, want user %s, email %s", info, pc.user, pc.email)
			}
			api := b.fetch(http.MethodGet, "/api/data").json(t)
			if api["user"] != pc.user || api["email"] != pc.email || api["bearer"] == "" {
				t.Fatalf("relay route upstream saw %v", api)
			}
			if !containsDigest(e.p.tokens.all(), api["bearer"]) {
				t.Fatal("the relay route did not get the provider's access token")
			}
			plain := b.fetch(http.MethodGet, "/plain/data").json(t)
			if plain["user"] != pc.user || plain["bearer"] != "" {
				t.Fatalf("non-relay route upstream saw %v, want identity without the access token", plain)
			}
			// Signing in again over the session replaces it and its tokens.
			records := e.store.Len()
			b.mustLogin()
			if got := e.store.Len(); got != records {
				t.Errorf("a second login left %d store records, had %d: the old session's tokens must go with it", got, records)
			}
			e.assertNoTokens(nil, b)
		})
	}
}

func contains(list []string, s any) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func containsDigest(tokens []string, d any) bool {
	for _, tok := range tokens {
		if digest(tok) == d {
			return true
		}
	}
	return false
}

// TestSessionLimitAppliesToProviderLogins: the gateway's limit on sessions
// per user (its oldest end) counts logins through a provider too.
func TestSessionLimitAppliesToProviderLogins(t *testing.T) {
	e := newEnvWith(t, 1, func(urls []string) *provider { return providerCases(t)[0].start(t, urls) },
		nil, withSessionCap(2))
	var browsers []*browser
	for range 3 {
		e.clock.Advance(time.Second) // the oldest is told by its creation time
		b := e.browser(e.nodes[0])
		b.mustLogin()
		browsers = append(browsers, b)
	}
	for i, want := range []int{http.StatusUnauthorized, http.StatusOK, http.StatusOK} {
		if got := browsers[i].fetch(http.MethodGet, "/auth/session").Status; got != want {
			t.Errorf("session %d: %d, want %d", i, got, want)
		}
	}
}
