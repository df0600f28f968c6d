package vault_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/vault"
)

func TestAnonymousCallsPass(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	r := b.do("GET", "/api/articles", "", "")
	if r.status != 200 || r.json(t)["viewer"] != "anonymous" {
		t.Fatalf("anonymous read: %d %s", r.status, r.body)
	}
	if b.cookie != "" {
		t.Fatal("an anonymous call started a session")
	}
	// A client-sent token, or one smuggled in the query, is never passed
	// on: the backend sees an anonymous call.
	r = b.do("GET", "/api/user", "", "", "Authorization", "Token "+st.backend.sign(&backendUser{ID: 1}))
	if r.status != http.StatusUnauthorized {
		t.Fatalf("client-sent Authorization reached the backend: %d", r.status)
	}
	if auth, _, _ := st.backend.last(); auth != "" {
		t.Fatalf("backend saw Authorization %q", auth)
	}
}

func TestCaptureReplaceAttach(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	r := b.register("alice")
	if r.status != http.StatusCreated {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	st.assertNoToken("register answer", r.body)
	if !strings.HasPrefix(b.stored, "cloakroom-vault.") {
		t.Fatalf("the SPA stored %q, want the placeholder", b.stored)
	}
	if b.cookie == "" {
		t.Fatal("no session cookie after the captured register")
	}
	if u := r.json(t)["user"].(map[string]any); u["username"] != "alice" || u["email"] != "alice@example.com" {
		t.Fatalf("the rest of the body changed: %v", u)
	}
	// The SPA sends its placeholder with the cookie: the backend gets
	// its own token, in its own scheme.
	if who := b.whoami(); who != "alice" {
		t.Fatalf("whoami = %q", who)
	}
	auth, _, _ := st.backend.last()
	if !strings.HasPrefix(auth, "Token eyJ") || st.backend.verify(strings.TrimPrefix(auth, "Token ")) == nil {
		t.Fatalf("backend got Authorization %q", auth)
	}

	// The cookie alone grants nothing (the SPA cleared its storage).
	cookieOnly := &browser{st: st, srv: st.srv, cookie: b.cookie}
	if who := cookieOnly.whoami(); who != "" {
		t.Fatalf("cookie alone acted as %q", who)
	}
	// Nor does the placeholder alone, nor another session's placeholder.
	if who := (&browser{st: st, srv: st.srv, stored: b.stored}).whoami(); who != "" {
		t.Fatalf("placeholder alone acted as %q", who)
	}
	other := st.browser()
	other.register("bob")
	if who := (&browser{st: st, srv: st.srv, cookie: b.cookie, stored: other.stored}).whoami(); who != "" {
		t.Fatalf("alice's cookie with bob's placeholder acted as %q", who)
	}
	// That 401 did not end alice's session: no token was attached.
	if !st.sessionAlive(b.cookie) || b.whoami() != "alice" {
		t.Fatal("alice's session did not survive unattached 401s")
	}

	// A fresh login (compressed answer) is captured too.
	b2 := st.browser()
	r = b2.login("alice")
	if r.status != 200 || r.header.Get("Content-Encoding") != "" {
		t.Fatalf("login: %d, Content-Encoding %q", r.status, r.header.Get("Content-Encoding"))
	}
	st.assertNoToken("login answer", r.body)
	if b2.whoami() != "alice" {
		t.Fatal("second device not attached")
	}
	st.assertNoToken("audit log", st.logs.String())
}

func TestRefreshReplacesTheVaultedToken(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("carol")
	b.whoami()
	first, _, _ := st.backend.last()
	// PUT /api/user answers with a fresh token: vaulted, not shown.
	r := b.do("PUT", "/api/user", "application/json", `{"user":{"bio":"hi"}}`)
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	st.assertNoToken("PUT answer", r.body)
	if got := r.json(t)["user"].(map[string]any)["token"]; got != b.stored {
		t.Fatalf("PUT answer token = %v, want the session's placeholder", got)
	}
	issued := st.backend.issued()
	fresh := issued[len(issued)-1]
	b.whoami()
	auth, _, _ := st.backend.last()
	if auth != "Token "+fresh || auth == first {
		t.Fatalf("after refresh the backend got %q, want the fresh token", auth[:min(len(auth), 20)])
	}
}

func TestUpstream401DropsTheSession(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("dave")
	cookie := b.cookie
	st.backend.skew.Store(int64(2 * tokenLifetime.Seconds())) // the token expired
	r := b.do("GET", "/api/user", "", "")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", r.status)
	}
	if b.cookie != "" || r.header.Get("Clear-Site-Data") == "" {
		t.Fatalf("cookie not expired (%q) or no Clear-Site-Data", r.header.Values("Set-Cookie"))
	}
	if st.sessionAlive(cookie) {
		t.Fatal("session survives the upstream 401")
	}
}

func TestStripTokenParameters(t *testing.T) {
	st := newStack(t, stackOptions{})
	victim := st.browser()
	victim.register("erin")
	stolen := st.backend.issued()[0]
	attacker := st.browser()
	for _, q := range []string{"access_token=", "ACCESS_TOKEN=", "access%5Ftoken=", "x=1;access_token="} {
		r := attacker.do("GET", "/api/user?"+q+stolen, "", "")
		if r.status != http.StatusUnauthorized {
			t.Fatalf("token in query %q: %d", q, r.status)
		}
		if _, u, _ := st.backend.last(); strings.Contains(u, "eyJ") {
			t.Fatalf("backend saw %q", u)
		}
	}
	r := attacker.do("GET", "/api/articles?tag=go&access_token="+stolen, "", "")
	if _, u, _ := st.backend.last(); r.status != 200 || u != "/api/articles?tag=go" {
		t.Fatalf("other parameters changed: %q", u)
	}
	r = attacker.do("POST", "/api/form", "application/x-www-form-urlencoded", "title=x&access_token="+stolen)
	if _, _, form := st.backend.last(); r.status != http.StatusUnauthorized || form != "title=x" {
		t.Fatalf("token in form: %d, backend form %q", r.status, form)
	}
	// The logged-in SPA still works through the form endpoint.
	if r := victim.do("POST", "/api/form", "application/x-www-form-urlencoded", "title=y"); r.status != 200 {
		t.Fatalf("victim's form post: %d", r.status)
	}
}

func TestLogoutBothPaths(t *testing.T) {
	st := newStack(t, stackOptions{})
	// The gateway's own logout.
	b := st.browser()
	b.register("frank")
	cookie := b.cookie
	if r := b.do("POST", "/auth/logout", "", ""); r.status != http.StatusNoContent {
		t.Fatalf("/auth/logout: %d", r.status)
	}
	if st.sessionAlive(cookie) {
		t.Fatal("session alive after /auth/logout")
	}
	stale := &browser{st: st, srv: st.srv, cookie: cookie, stored: b.stored}
	if stale.whoami() != "" {
		t.Fatal("a copy of the cookie works after /auth/logout")
	}

	// The app's own logout path: the token goes with that call, then the
	// session ends.
	b = st.browser()
	b.login("frank")
	cookie = b.cookie
	r := b.do("POST", "/api/users/logout", "", "")
	if r.status != http.StatusNoContent || r.header.Get("Clear-Site-Data") == "" {
		t.Fatalf("app logout: %d %v", r.status, r.header)
	}
	if auth, _, _ := st.backend.last(); !strings.HasPrefix(auth, "Token eyJ") {
		t.Fatal("the app's logout call did not carry the token")
	}
	if st.sessionAlive(cookie) || (&browser{st: st, srv: st.srv, cookie: cookie, stored: b.stored}).whoami() != "" {
		t.Fatal("session alive after the app's logout")
	}
}

func TestSecondLoginReplacesTheSession(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("gina")
	st.browser().register("hank")
	first := b.cookie
	b.login("hank")
	if b.cookie == first || st.sessionAlive(first) {
		t.Fatal("the first session survived a second login in the same browser")
	}
	if who := b.whoami(); who != "hank" {
		t.Fatalf("after the second login the calls act as %q", who)
	}
}

func TestLeakGuard(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("ivy")
	before := st.leaks()
	r := b.do("GET", "/api/debug", "", "")
	if r.status != 200 {
		t.Fatalf("debug: %d", r.status)
	}
	st.assertNoToken("debug answer", r.body)
	if r.header.Get("X-Debug-Token") != "" {
		t.Fatal("a header carrying the token reached the browser")
	}
	v := r.json(t)
	if v["service_jwt"] != "[removed by cloakroom]" || !strings.HasPrefix(v["debug"].(map[string]any)["note"].(string), "signed ") {
		t.Fatalf("answer after the guard: %s", r.body)
	}
	// The echoed token twice, the other JWT once, and the header.
	if got := st.leaks() - before; got != 4 {
		t.Fatalf("leaks counted: %v, want 4", got)
	}
	st.assertNoToken("audit log", st.logs.String())
}

func TestBodiesTheGuardCannotCheckAreRefused(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	if r := b.do("GET", "/api/big", "", ""); r.status != http.StatusBadGateway {
		t.Fatalf("oversized JSON: %d", r.status)
	}
	if r := b.do("GET", "/api/brotli", "", ""); r.status != http.StatusBadGateway {
		t.Fatalf("undecodable encoding: %d", r.status)
	}
	// Other bodies are checked as they stream: a JWT-shaped string is
	// masked with as many bytes, the rest stays as it is.
	r := b.do("GET", "/api/page", "", "")
	want := "plain text [removed by cloakroom]" + strings.Repeat("*", 41-len("[removed by cloakroom]")) + " stays as it is"
	if r.status != 200 || r.body != want {
		t.Fatalf("plain text: %d %q", r.status, r.body)
	}
}

func TestAttachOnCookieAndDropField(t *testing.T) {
	st := newStack(t, stackOptions{route: func(r *vault.Route) {
		r.AttachOnCookie = true
		r.DropField = true
	}})
	b := st.browser()
	r := b.register("jack")
	u := r.json(t)["user"].(map[string]any)
	if _, ok := u["token"]; ok || u["username"] != "jack" {
		t.Fatalf("token field not dropped: %s", r.body)
	}
	if b.stored != "" {
		t.Fatal("the SPA found a token")
	}
	if who := b.whoami(); who != "jack" {
		t.Fatalf("cookie-only call acted as %q", who)
	}
}

// The vaulted session is a real cloakroom session: it is listed on the
// devices endpoint, and revoking the user forgets the token.
func TestVaultSessionIsARealSession(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("nina")
	r := b.do("GET", "/auth/sessions", "", "")
	if r.status != 200 || !strings.Contains(r.body, `"current":true`) {
		t.Fatalf("devices: %d %s", r.status, r.body)
	}
	if err := st.manager.RevokeUser(t.Context(), "/api/:1"); err != nil { // nina's id claim
		t.Fatal(err)
	}
	if who := b.whoami(); who != "" {
		t.Fatalf("after revocation the calls act as %q", who)
	}
}

// An event stream flows through with its JWT-shaped strings masked and
// everything else as it was.
func TestStreamsAreMasked(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("olga")
	r := b.do("GET", "/api/events", "", "")
	if r.status != 200 || strings.Count(r.body, "data: event") != 3 || strings.Count(r.body, "[removed by cloakroom]") != 3 {
		t.Fatalf("event stream: %d %q", r.status, r.body)
	}
	st.assertNoToken("event stream", r.body)
}

// Key rotation: a token sealed with the old key still opens once a new
// key is prepended; once the old key is removed, the session ends at its
// next call instead of attaching anything.
func TestKeyRotation(t *testing.T) {
	store := memstore.New(memstore.Config{})
	t.Cleanup(func() { store.Close() })
	oldLine, _ := seal.NewKeyLine("old")
	newLine, _ := seal.NewKeyLine("new")
	keys := func(lines ...string) *seal.Keyring {
		k, err := seal.Parse([]byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	backend := newJWTBackend()
	before := newStack(t, stackOptions{store: store, backend: backend, keys: keys(oldLine)})
	b1, b2 := before.browser(), before.browser()
	b1.register("paul")
	b2.register("sara")

	rotated := newStack(t, stackOptions{store: store, backend: backend, keys: keys(newLine, oldLine)})
	if who := b1.on(rotated).whoami(); who != "paul" {
		t.Fatalf("after prepending a key: %q", who)
	}
	// GET /api/user refreshed the token: it is sealed with the new key now.
	var sealed string
	rotated.withSession(b1.cookie, func(s *cloakroom.Session) { sealed = s.GetString("vault.token") })
	if !strings.HasPrefix(sealed, "v1.new.") {
		t.Fatalf("refreshed token sealed as %.8s..., want the new key", sealed)
	}

	retired := newStack(t, stackOptions{store: store, backend: backend, keys: keys(newLine)})
	if who := b1.on(retired).whoami(); who != "paul" {
		t.Fatalf("a token resealed with the new key: %q", who)
	}
	onRetired := b2.on(retired)
	cookie := onRetired.cookie
	if who := onRetired.whoami(); who != "" {
		t.Fatalf("with its sealing key removed the call acted as %q", who)
	}
	if retired.sessionAlive(cookie) {
		t.Fatal("a session whose token no longer opens lives on")
	}
}

// A sealed token copied into another session (by anyone who can write the
// store) does not open there: it is bound to its user and session.
func TestSealedTokenBoundToItsSession(t *testing.T) {
	st := newStack(t, stackOptions{})
	alice, bob := st.browser(), st.browser()
	alice.register("quinn")
	bob.register("rita")
	var sealed string
	st.withSession(alice.cookie, func(s *cloakroom.Session) { sealed = s.GetString("vault.token") })
	if !strings.HasPrefix(sealed, "v1.") {
		t.Fatalf("stored token %q is not sealed", sealed)
	}
	st.withSession(bob.cookie, func(s *cloakroom.Session) { s.Put("vault.token", sealed) })
	if who := bob.whoami(); who != "" {
		t.Fatalf("bob's session with alice's sealed token acted as %q", who)
	}
	if who := alice.whoami(); who != "quinn" {
		t.Fatalf("alice: %q", who)
	}
}

// A deflate answer with the token at a --vault-token-path field: the
// token is vaulted (refresh) and the body reaches the browser decoded,
// with the placeholder.
func TestDeflateAndTokenPath(t *testing.T) {
	st := newStack(t, stackOptions{route: func(r *vault.Route) {
		p, err := vault.ParseJSONPath("data.jwt")
		if err != nil {
			t.Fatal(err)
		}
		r.TokenPaths = []vault.JSONPath{p}
		r.StripParams = []string{"token"}
	}})
	b := st.browser()
	b.register("tess")
	r := b.do("GET", "/api/user/deflate", "", "")
	if r.status != 200 || r.header.Get("Content-Encoding") != "" || !strings.Contains(r.body, `"jwt":"`+b.stored+`"`) {
		t.Fatalf("deflate answer: %d %q %s", r.status, r.header.Get("Content-Encoding"), r.body)
	}
	issued := st.backend.issued()
	b.whoami()
	if auth, _, _ := st.backend.last(); auth != "Token "+issued[len(issued)-1] {
		t.Fatal("the token from data.jwt was not vaulted")
	}
	// A configured strip parameter goes too.
	b.do("GET", "/api/articles?token=x&tag=y", "", "")
	if _, u, _ := st.backend.last(); u != "/api/articles?tag=y" {
		t.Fatalf("backend saw %q", u)
	}
}
