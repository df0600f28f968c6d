package conduit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// behindVault is the app behind a gateway whose /api/ route is in vault
// mode, configured as docs/migrate.md's step 6 says, over real HTTP on
// loopback.
type behindVault struct {
	app   *App
	stack *gateway.Stack
	api   string // the gateway's origin for API clients: http://127.0.0.1:port
	page  string // the same for the browser: http://localhost:port
}

type vaultOptions struct {
	endForgotten bool
	now          func() time.Time // the gateway's clock; default time.Now
}

func startBehindVault(t *testing.T, opts vaultOptions) *behindVault {
	t.Helper()
	if opts.now == nil {
		opts.now = time.Now
	}
	app, err := New(Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(app.API())
	t.Cleanup(backend.Close)
	upstream, _ := url.Parse(backend.URL)
	dist := t.TempDir()
	if err := WriteSPA(dist); err != nil {
		t.Fatal(err)
	}
	keys, err := seal.Generate("test")
	if err != nil {
		t.Fatal(err)
	}
	var captures []vault.Capture
	for _, c := range []string{"POST /api/users/login user.token", "POST /api/users user.token"} {
		capture, err := vault.ParseCapture(c)
		if err != nil {
			t.Fatal(err)
		}
		captures = append(captures, capture)
	}
	store := memstore.New(memstore.Config{Now: opts.now})
	t.Cleanup(func() { store.Close() })
	logger := slog.New(slog.DiscardHandler)
	st, err := gateway.Assemble(context.Background(), gateway.Parts{
		Sessions:     cloakroom.Config{Store: store, Now: opts.now, Logger: logger},
		AccountStore: memaccounts.New(),
		Accounts:     accounts.Config{Throttle: memaccounts.NewThrottle(0), Logger: logger},
		Admission:    signin.Config{Logger: logger, Now: opts.now},
		Vault: &vault.Config{Sealer: keys, Logger: logger, Routes: []vault.Route{{
			Prefix: "/api/", Capture: captures, Scheme: "Token", UserClaim: "id", EndForgotten: opts.endForgotten,
		}}},
		Gateway: gateway.Config{
			Routes:      []proxy.Route{{Prefix: "/api/", Upstream: upstream}},
			Static:      dist,
			PublicPaths: []string{"/"},
			Logger:      logger,
			Now:         opts.now,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(st.Gateway.Handler())
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return &behindVault{app: app, stack: st, api: srv.URL, page: "http://localhost:" + port}
}

// apiClient calls the API as an unchanged API client does (newman running
// the app's own collection, curl, a mobile app): a cookie jar, the token
// of the last login answer sent as "Authorization: Token", redirects
// followed with the method kept on 307, and no Origin, Sec-Fetch-* or
// X-CSRF-Token.
type apiClient struct {
	t       *testing.T
	base    string
	cookies map[string]string
	token   string
	jwts    int // answers that carried something JWT-shaped
}

func newAPIClient(t *testing.T, base string) *apiClient {
	return &apiClient{t: t, base: base, cookies: map[string]string{}}
}

// do sends one call and returns its status and JSON body.
func (c *apiClient) do(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			c.t.Fatal(err)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range 5 {
		req, err := http.NewRequest(method, c.base+path, bytes.NewReader(raw))
		if err != nil {
			c.t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Token "+c.token)
		}
		for name, value := range c.cookies {
			req.AddCookie(&http.Cookie{Name: name, Value: value})
		}
		res, err := client.Do(req)
		if err != nil {
			c.t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, sc := range res.Cookies() {
			if sc.MaxAge < 0 || sc.Value == "" {
				delete(c.cookies, sc.Name)
			} else {
				c.cookies[sc.Name] = sc.Value
			}
		}
		header, _ := json.Marshal(res.Header)
		if bytes.Contains(got, []byte("eyJ")) || bytes.Contains(header, []byte("eyJ")) {
			c.jwts++
		}
		if res.StatusCode == http.StatusTemporaryRedirect || res.StatusCode == http.StatusPermanentRedirect {
			path = res.Header.Get("Location")
			continue
		}
		var v map[string]any
		json.Unmarshal(got, &v)
		return res.StatusCode, v
	}
	c.t.Fatalf("%s %s: too many redirects", method, path)
	return 0, nil
}

// keep stores the token of a user answer, as the collection's scripts do.
func (c *apiClient) keep(answer map[string]any) {
	if user, ok := answer["user"].(map[string]any); ok {
		if token, ok := user["token"].(string); ok {
			c.token = token
		}
	}
}

// An unchanged API client (no Origin, no X-CSRF-Token, only its token)
// works through the vault call for call, and never receives a JWT; the
// same write on the cookie alone is refused.
func TestUnchangedAPIClientThroughTheVault(t *testing.T) {
	g := startBehindVault(t, vaultOptions{endForgotten: true})
	c := newAPIClient(t, g.api)
	want := func(what string, status, wantStatus int) {
		t.Helper()
		if status != wantStatus {
			t.Fatalf("%s: %d, want %d", what, status, wantStatus)
		}
	}
	status, answer := c.do("POST", "/api/users", map[string]any{"user": map[string]string{"username": "jake", "email": "jake@example.test", "password": "jake-password"}})
	want("register (POST /api/users, the backend's 307 followed)", status, http.StatusCreated)
	c.keep(answer)
	if !strings.HasPrefix(c.token, "cloakroom-vault.") || c.cookies[cloakroom.DefaultCookieName] == "" {
		t.Fatalf("after register the client holds %q and cookies %v, want the placeholder and a session", c.token, c.cookies)
	}
	status, answer = c.do("POST", "/api/users/login", map[string]any{"user": map[string]string{"email": "jake@example.test", "password": "jake-password"}})
	want("login with the cookie of the register", status, http.StatusOK)
	c.keep(answer)
	status, answer = c.do("GET", "/api/user", nil)
	want("current user", status, http.StatusOK)
	if echo := answer["user"].(map[string]any)["token"]; echo != c.token {
		t.Errorf("the profile echoes %v, want the placeholder %q", echo, c.token)
	}
	status, answer = c.do("PUT", "/api/user", map[string]any{"user": map[string]string{"bio": "I work at statefarm"}})
	want("update user", status, http.StatusOK)
	c.keep(answer)
	status, answer = c.do("POST", "/api/articles", map[string]any{"article": map[string]any{"title": "How to train your dragon", "description": "Ever wonder how?", "body": "Very carefully.", "tagList": []string{"dragons"}}})
	want("create article", status, http.StatusCreated)
	slug, _ := answer["article"].(map[string]any)["slug"].(string)
	status, _ = c.do("POST", "/api/articles/"+slug+"/favorite", nil)
	want("favorite", status, http.StatusOK)
	status, answer = c.do("GET", "/api/articles", nil)
	want("list articles", status, http.StatusOK)
	if n := answer["articlesCount"]; n != 1.0 {
		t.Errorf("articlesCount %v, want 1", n)
	}
	status, _ = c.do("DELETE", "/api/articles/"+slug+"/favorite", nil)
	want("unfavorite", status, http.StatusOK)
	status, _ = c.do("DELETE", "/api/articles/"+slug, nil)
	want("delete article", status, http.StatusNoContent)

	cookieOnly := &apiClient{t: t, base: g.api, cookies: c.cookies}
	status, answer = cookieOnly.do("POST", "/api/articles", map[string]any{"article": map[string]any{"title": "Forged", "body": "x"}})
	if status != http.StatusForbidden || answer["error"] != "csrf" {
		t.Errorf("a write on the cookie alone: %d %v, want 403 csrf", status, answer)
	}
	if c.jwts+cookieOnly.jwts != 0 {
		t.Errorf("%d answers carried a JWT to the client", c.jwts+cookieOnly.jwts)
	}
	// The backend got its own token with every call that needed it, and
	// never the placeholder.
	for _, r := range g.app.Requests() {
		if r.Authorization && r.UserID == 0 {
			t.Errorf("%s %s reached the backend with a token it does not take", r.Method, r.Path)
		}
		if r.Method != "GET" && strings.HasPrefix(r.Path, "/api/articles") && r.UserID == 0 {
			t.Errorf("%s %s reached the backend without the user's token", r.Method, r.Path)
		}
	}
}

// jsStatus fetches path from the page with the given Authorization value
// ("" for none) and returns the answer's status.
func jsStatus(t *testing.T, ctx context.Context, path, authorization string) int {
	t.Helper()
	q, _ := json.Marshal(path)
	a, _ := json.Marshal(authorization)
	expr := `fetch(` + string(q) + `, {headers: ` + string(a) + ` ? {Authorization: ` + string(a) + `} : {}}).then(r => r.status)`
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch %s: %v", path, err)
	}
	return status
}

// signUpInBrowser opens the SPA and registers jake through its form.
func signUpInBrowser(t *testing.T, ctx context.Context, g *behindVault) (placeholder string) {
	t.Helper()
	browsertest.Step(t, ctx, "open", chromedp.Navigate(g.page+"/"))
	waitStatus(t, ctx, "signed-out")
	browsertest.Step(t, ctx, "register",
		chromedp.SetValue(chromedp.ID("reg-username"), "jake"),
		chromedp.SetValue(chromedp.ID("reg-email"), "jake@example.test"),
		chromedp.SetValue(chromedp.ID("reg-password"), "jake-password"),
		chromedp.Click(chromedp.ID("register")))
	waitStatus(t, ctx, "signed-in:jake")
	browsertest.Step(t, ctx, "publish",
		chromedp.SetValue(chromedp.ID("title"), "Hello"),
		chromedp.SetValue(chromedp.ID("body"), "World"),
		chromedp.Click(chromedp.ID("publish")))
	waitStatus(t, ctx, "published:Hello")
	placeholder = evalJS[string](t, ctx, `localStorage.getItem("jwtToken")`)
	if !strings.HasPrefix(placeholder, "cloakroom-vault.") {
		t.Fatalf("the SPA stored %q, want the placeholder", placeholder)
	}
	if storage := evalJS[string](t, ctx, `JSON.stringify(localStorage)`); strings.Contains(storage, "eyJ") {
		t.Fatalf("a JWT reached the page's storage: %s", storage)
	}
	return placeholder
}

// The SPA's own logout only clears its storage. With EndForgotten its next
// call ends the server's session: the old placeholder with the browser's
// cookie is refused and /auth/session answers 401.
func TestSPAStorageLogoutEndsTheVaultSession(t *testing.T) {
	browser := browsertest.New(t)
	g := startBehindVault(t, vaultOptions{endForgotten: true})
	placeholder := signUpInBrowser(t, browser, g)
	if got := jsStatus(t, browser, "/api/user", "Token "+placeholder); got != http.StatusOK {
		t.Fatalf("before the logout, the placeholder: %d", got)
	}
	browsertest.Step(t, browser, "the SPA's logout", chromedp.Click(chromedp.ID("logout")))
	waitStatus(t, browser, "signed-out") // after it reloaded the public list
	if got := jsStatus(t, browser, "/api/user", "Token "+placeholder); got != http.StatusUnauthorized {
		t.Errorf("after the SPA's logout, the old placeholder with the browser's cookie: %d, want 401", got)
	}
	if got := jsStatus(t, browser, "/auth/session", ""); got != http.StatusUnauthorized {
		t.Errorf("after the SPA's logout, /auth/session: %d, want 401", got)
	}
}

// Without EndForgotten, the SPA's logout leaves the session to its idle
// deadline, which page loads and the SPA's calls without the placeholder
// do not move: it ends 30 minutes after the last call with the
// placeholder, however often the browser loads pages.
func TestForgottenVaultSessionEndsAtItsIdleDeadline(t *testing.T) {
	browser := browsertest.New(t)
	clock := &fakeClock{t: time.Now()}
	g := startBehindVault(t, vaultOptions{now: clock.Now})
	placeholder := signUpInBrowser(t, browser, g)
	browsertest.Step(t, browser, "the SPA's logout", chromedp.Click(chromedp.ID("logout")))
	waitStatus(t, browser, "signed-out")
	if got := jsStatus(t, browser, "/auth/session", ""); got != http.StatusOK {
		t.Fatalf("without EndForgotten the session ends at its idle deadline, not at the logout: /auth/session %d", got)
	}
	for range 5 { // 25 minutes of page loads
		clock.Add(5 * time.Minute)
		browsertest.Step(t, browser, "reload", chromedp.Reload())
		waitStatus(t, browser, "signed-out")
	}
	if got := jsStatus(t, browser, "/auth/session", ""); got != http.StatusOK {
		t.Fatalf("25 minutes after the last use: /auth/session %d, want 200", got)
	}
	for range 2 { // 35 minutes
		clock.Add(5 * time.Minute)
		browsertest.Step(t, browser, "reload", chromedp.Reload())
		waitStatus(t, browser, "signed-out")
	}
	if got := jsStatus(t, browser, "/auth/session", ""); got != http.StatusUnauthorized {
		t.Errorf("35 minutes after the last use, with page loads every 5: /auth/session %d, want 401", got)
	}
	if got := jsStatus(t, browser, "/api/user", "Token "+placeholder); got != http.StatusUnauthorized {
		t.Errorf("after the idle deadline, the old placeholder: %d, want 401", got)
	}
}
