package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/dbsc/dbsctest"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/internal/testoidc"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/storetest"
)

const boundLifetime = 10 * time.Second

// boundStack is a gateway assembled with device binding, on a memory store
// and a fake clock, with users alice (admin) and bob.
type boundStack struct {
	t     *testing.T
	clock *storetest.Clock
	st    *gateway.Stack
	srv   *httptest.Server
	logs  *syncbuf.Buffer
}

func newBoundStack(t *testing.T, req gateway.BindingRequirement) *boundStack {
	t.Helper()
	return newBoundStackWith(t, req, nil)
}

// newBoundStackWith is newBoundStack with edit applied to the parts, given
// the gateway's origin, before they are assembled.
func newBoundStackWith(t *testing.T, req gateway.BindingRequirement, edit func(p *gateway.Parts, origin string)) *boundStack {
	t.Helper()
	b := &boundStack{t: t, clock: storetest.NewClock(time.Now().UTC().Truncate(time.Second)), logs: &syncbuf.Buffer{}}
	mem := memstore.New(memstore.Config{Now: b.clock.Now})
	t.Cleanup(func() { mem.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	logger := slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	// The server starts first: the OpenID client needs the origin.
	var handler http.Handler = http.NotFoundHandler()
	b.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(b.srv.Close)
	parts := gateway.Parts{
		Sessions:       cloakroom.Config{Store: mem, Now: b.clock.Now, Logger: logger},
		AccountStore:   memaccounts.New(),
		Accounts:       accounts.Config{Throttle: memaccounts.NewThrottle(0), Now: b.clock.Now, Logger: logger},
		Admission:      signin.Config{Now: b.clock.Now, Logger: logger},
		Binding:        &dbsc.Config{Key: key, CookieLifetime: boundLifetime},
		RequireBinding: req,
		Gateway:        gateway.Config{TLS: true, Now: b.clock.Now},
	}
	if edit != nil {
		edit(&parts, b.srv.URL)
	}
	b.st, err = gateway.Assemble(context.Background(), parts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.st.Close() })
	ctx := context.Background()
	if err := b.st.Accounts.Add(ctx, "alice", "correct horse battery staple", []string{"admin"}, ""); err != nil {
		t.Fatal(err)
	}
	if err := b.st.Accounts.Add(ctx, "bob", "correct horse battery staple", nil, ""); err != nil {
		t.Fatal(err)
	}
	handler = b.st.Gateway.Handler()
	return b
}

func (b *boundStack) client(register bool) *dbsctest.Client {
	key, err := dbsctest.NewKey(dbsc.AlgES256)
	if err != nil {
		b.t.Fatal(err)
	}
	c := dbsctest.New(b.srv.URL, b.srv.Client(), key)
	c.Now, c.Register = b.clock.Now, register
	return c
}

// signIn signs user in with the password form's JSON twin.
func (b *boundStack) signIn(c *dbsctest.Client, user string) *dbsctest.Response {
	b.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": "correct horse battery staple"})
	r, err := c.Do(context.Background(), http.MethodPost, "/auth/login", body, nil)
	if err != nil || r.Status != http.StatusOK {
		b.t.Fatalf("sign-in: %v %+v\n%s", err, r, b.logs)
	}
	return r
}

func (b *boundStack) get(c *dbsctest.Client, path string, header ...string) *dbsctest.Response {
	b.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	r, err := c.Do(context.Background(), http.MethodGet, path, nil, h)
	if err != nil {
		b.t.Fatalf("GET %s: %v", path, err)
	}
	return r
}

// replay sends GET path with exactly the cookies of jar.
func (b *boundStack) replay(jar map[string]string, path string, header ...string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for name, value := range jar {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	client := *b.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (b *boundStack) metrics() string {
	rec := httptest.NewRecorder()
	b.st.Gateway.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// A password sign-in offers registration; the browser registers, its
// session shows as bound in the devices API, and keeps working across
// bound-cookie lifetimes, while a copy of its cookie jar is refused once
// the bound cookie it holds expires: 401 JSON saying why for a script, the
// sign-in page for a navigation, the session not ended; the metrics count
// it.
func TestGatewayBindsPasswordSessions(t *testing.T) {
	b := newBoundStack(t, gateway.BindingRequirement{})
	c := b.client(true)
	r := b.signIn(c, "bob")
	if r.Header.Get(dbsc.HeaderRegistration) == "" || !strings.Contains(r.Header.Get(dbsc.HeaderRegistration), `path="/auth/dbsc/register"`) {
		t.Fatalf("no registration offered: %v", r.Header)
	}
	if c.Session() == nil {
		t.Fatalf("not registered:\n%s", b.logs)
	}
	var list struct{ Sessions []map[string]any }
	if r := b.get(c, "/auth/sessions"); r.Status != http.StatusOK || r.JSON(&list) != nil || len(list.Sessions) != 1 || list.Sessions[0]["bound"] != true {
		t.Fatalf("devices API: %d %s", r.Status, r.Body)
	}
	stolen := c.Jar()
	for range 3 {
		b.clock.Advance(boundLifetime)
		if r := b.get(c, "/auth/session"); r.Status != http.StatusOK {
			t.Fatalf("the browser: %d %s\n%s", r.Status, r.Body, b.logs)
		}
	}
	resp, body := b.replay(stolen, "/auth/session")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"ended":"device"`) {
		t.Fatalf("the copied jar: %d %s", resp.StatusCode, body)
	}
	if len(resp.Header.Values("Set-Cookie")) != 0 {
		t.Fatalf("the refusal set cookies: %v", resp.Header.Values("Set-Cookie"))
	}
	resp, _ = b.replay(stolen, "/auth/account", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document", "Sec-Fetch-Site", "none")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "ended=device") {
		t.Fatalf("the copied jar navigating: %d %q", resp.StatusCode, loc)
	}
	if r := b.get(c, "/auth/session"); r.Status != http.StatusOK {
		t.Fatalf("the browser after the replays: %d", r.Status)
	}
	m := b.metrics()
	for _, want := range []string{
		`cloakroom_dbsc_offers_total{outcome="offered"} 1`,
		`cloakroom_dbsc_registrations_total{outcome="registered"} 1`,
		`cloakroom_dbsc_refreshes_total{outcome="refreshed"} 3`,
		`cloakroom_dbsc_refused_total{reason="expired"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(b.logs.String(), "suspected replay") {
		t.Fatalf("no audit line for the replay:\n%s", b.logs)
	}
}

// RequireBinding: a session that never registered (a browser without
// DBSC) is refused on the paths and for the roles named, and works
// elsewhere; a bound session of the same role works everywhere.
func TestGatewayRequiresBinding(t *testing.T) {
	b := newBoundStack(t, gateway.BindingRequirement{Roles: []string{"admin"}, Paths: []string{"/auth/account"}})
	unbound := b.client(false)
	b.signIn(unbound, "bob")
	if r := b.get(unbound, "/auth/session"); r.Status != http.StatusOK {
		t.Fatalf("bob without binding, elsewhere: %d", r.Status)
	}
	if r := b.get(unbound, "/auth/account", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document"); r.Status != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "ended=device") {
		t.Fatalf("bob without binding, on a path that needs it: %d %v", r.Status, r.Header)
	}
	admin := b.client(false)
	b.signIn(admin, "alice")
	if r := b.get(admin, "/auth/session"); r.Status != http.StatusUnauthorized {
		t.Fatalf("an admin without binding: %d", r.Status)
	}
	bound := b.client(true)
	b.signIn(bound, "alice")
	for _, path := range []string{"/auth/session", "/auth/sessions"} {
		if r := b.get(bound, path); r.Status != http.StatusOK {
			t.Fatalf("a bound admin, %s: %d %s", path, r.Status, r.Body)
		}
	}
	if !strings.Contains(b.metrics(), `cloakroom_dbsc_refused_total{reason="required"} 2`) {
		t.Fatalf("refusals not counted:\n%s", b.metrics())
	}
}

// An OpenID sign-in offers registration on the callback's redirect, and
// the provider's user's session binds like a local one's.
func TestGatewayBindsOpenIDSessions(t *testing.T) {
	provider := testoidc.Start(t, nil)
	sealer, err := seal.Generate("test")
	if err != nil {
		t.Fatal(err)
	}
	b := newBoundStackWith(t, gateway.BindingRequirement{}, func(p *gateway.Parts, origin string) {
		cfg := provider.Config()
		p.OIDC = &oidcbff.Config{
			Providers: []oidcbff.ProviderConfig{{Name: "mock", Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenAuth: "post"}},
			PublicURL: origin, Sealer: sealer,
		}
	})
	provider.Queue(testoidc.User{Subject: "dana", Email: "dana@example.com"})
	c := b.client(true)
	nav := []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none", "Sec-Fetch-Dest", "document"}
	r := b.get(c, "/auth/login/mock", nav...)
	if r.Status != http.StatusSeeOther {
		t.Fatalf("sign-in at the provider: %d %s", r.Status, r.Body)
	}
	r = b.get(c, r.Header.Get("Location"))
	if r.Status != http.StatusFound {
		t.Fatalf("the provider: %d %s", r.Status, r.Body)
	}
	r = b.get(c, r.Header.Get("Location"), "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Dest", "document")
	if r.Status != http.StatusSeeOther || r.Header.Get(dbsc.HeaderRegistration) == "" {
		t.Fatalf("the callback: %d, registration offered %q: %s\n%s", r.Status, r.Header.Get(dbsc.HeaderRegistration), r.Body, b.logs)
	}
	if c.Session() == nil {
		t.Fatalf("the provider's user did not register:\n%s", b.logs)
	}
	stolen := c.Jar()
	b.clock.Advance(boundLifetime)
	if r := b.get(c, "/auth/session"); r.Status != http.StatusOK {
		t.Fatalf("the browser: %d %s", r.Status, r.Body)
	}
	if resp, body := b.replay(stolen, "/auth/session"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the copied jar: %d %s", resp.StatusCode, body)
	}
}

// A renewal (re-authentication) gives the session a new token but keeps
// its binding: the bound cookie still works, refreshes go on, and the old
// token, bound cookie or not, is dead.
func TestGatewayBindingSurvivesRenewal(t *testing.T) {
	b := newBoundStack(t, gateway.BindingRequirement{})
	c := b.client(true)
	b.signIn(c, "bob")
	before := c.Jar()
	body, _ := json.Marshal(map[string]string{"password": "correct horse battery staple"})
	if r, err := c.Do(context.Background(), http.MethodPost, "/auth/reauth", body, nil); err != nil || r.Status != http.StatusOK {
		t.Fatalf("reauth: %v %+v", err, r)
	}
	after := c.Jar()
	if after[cloakroom.DefaultCookieName] == before[cloakroom.DefaultCookieName] {
		t.Fatal("the renewal kept the token")
	}
	if r := b.get(c, "/auth/session"); r.Status != http.StatusOK {
		t.Fatalf("after the renewal: %d %s", r.Status, r.Body)
	}
	b.clock.Advance(boundLifetime)
	if r := b.get(c, "/auth/session"); r.Status != http.StatusOK {
		t.Fatalf("a refresh after the renewal: %d %s\n%s", r.Status, r.Body, b.logs)
	}
	if resp, _ := b.replay(before, "/auth/session"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old token: %d", resp.StatusCode)
	}
}
