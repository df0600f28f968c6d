package multinode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/internal/testoidc"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// The users of the ways in besides the local account.
const (
	providerName    = "mock"
	providerSubject = "bob"
	vaultPrefix     = "/vault/"
	vaultUserName   = "carol"
)

// TestRevokeEveryoneOnEveryNode revokes everyone through the admin API of
// one of three gateways sharing the store, while every node is asked about
// every kind of session back to back: a local account's (password
// sign-in), an OpenID provider's user's (mockoidc), a vault user's (a JWT
// app behind the vault) and an anonymous one. No check that started after
// the admin call's 200 may accept a session, on any node. Each session is
// refused afterwards, the provider session's sealed tokens are gone with
// it, while the records that must outlive a global revocation (a
// back-channel logout's tombstone and used token ID, the live provider
// session's index) are unchanged; and every kind signs in anew.
func TestRevokeEveryoneOnEveryNode(t *testing.T) {
	const (
		rounds = 3               // revocations per store, through A, B and C in turn
		limit  = 2 * time.Second // a node still accepting a session then fails
	)
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			in := newSignIns(t)
			cl := newClusterWith(t, v, in)
			c := newClient(t)
			kept := endProviderSessionBackChannel(t, c, cl, in)
			row := everyoneRow{variant: v.name, accepted: map[string]int{}}
			sessions := signInEveryKind(t, c, cl, in, 0)
			var epoch uint64
			for round := range rounds {
				via := cl.nodes()[round%3]
				tokens := oidcbffKey("tokens", sessions.providerRef)
				if rec := findAuxEverywhere(t, cl, "the provider session's sealed tokens", tokens, true); !rec.EndsWithSessions {
					t.Fatal("the provider session's sealed tokens do not end with the sessions")
				}
				index := snapshotAux(t, cl, "the provider session's index", oidcbffKey("sid", providerIndexID(sessions.providerSID)))
				sessions.expect(t, c, cl, true)

				polls := newAcrossRevocation(limit)
				nodeOf := map[*poller]*node{}
				for _, s := range sessions.all {
					for _, n := range cl.nodes() {
						p := polls.start(n.name+" "+s.kind, func() (bool, error) { return s.check(c, n) })
						nodeOf[p] = n
					}
				}
				if err := polls.started(); err != nil {
					polls.markReturned()
					polls.wait()
					t.Fatal(err)
				}
				sent := time.Now()
				polls.markSent()
				r, err := c.revokeEveryone(via, in.adminToken)
				polls.markReturned()
				row.calls = append(row.calls, time.Since(sent))
				pollers := polls.wait()
				if err != nil {
					t.Fatalf("revoke-all through %s: %v", via.name, err)
				}
				var answer struct {
					Revoked string `json:"revoked"`
					Epoch   uint64 `json:"epoch"`
				}
				if r.status != http.StatusOK || json.Unmarshal(r.body, &answer) != nil || answer.Revoked != "everyone" || answer.Epoch <= epoch {
					t.Fatalf("revoke-all through %s: status %d: %s (the epoch before: %d)", via.name, r.status, r.body, epoch)
				}
				epoch = answer.Epoch
				row.rounds++
				for _, p := range pollers {
					if p.err != nil {
						t.Errorf("%s while revoking: %v; the node logged:\n%s", p.name, p.err, nodeOf[p].warnings.String())
						continue
					}
					row.checks += len(p.after)
					row.during += p.during
					accepted, latest := p.acceptedAfter()
					row.accepted[nodeOf[p].name] += accepted
					switch {
					case accepted == 0:
					case v.strict:
						t.Errorf("%s: %d checks that started after the admin call's response accepted the session, the last %v after it", p.name, accepted, latest)
					default:
						t.Logf("%s: %d checks that started after the admin call's response accepted the session, the last %v after it; %s makes no such promise", p.name, accepted, latest, v.name)
					}
					if still, at := p.stillAccepting(); still {
						t.Errorf("%s: still accepted %v after the admin call's response", p.name, at)
					}
				}

				sessions.expect(t, c, cl, false)
				findAuxEverywhere(t, cl, "the provider session's sealed tokens", tokens, false)
				for _, k := range append(kept, index) {
					k.expectUnchanged(t, cl)
				}
				sessions = signInEveryKind(t, c, cl, in, round+1)
			}
			checkNoPanics(t, cl.nodes()...)
			if row.during == 0 {
				t.Errorf("no check started while the admin call ran, in %d revocations: the nodes were not asked during the revocation", row.rounds)
			}
			report.mu.Lock()
			report.everyone = append(report.everyone, row)
			report.mu.Unlock()
			t.Logf("%s: %d revocations of everyone; %d checks started while the admin call ran, %d after its response, of which accepted: %s; admin call p50 %s, max %s",
				v.name, row.rounds, row.during, row.checks, row.acceptedPerNode(), ms(row.calls.quantile(0.5)), ms(row.calls.max()))
		})
	}
}

// endProviderSessionBackChannel signs the provider's user in and has the
// provider end that session by a back-channel logout naming its sid. It
// returns the records the logout leaves, which must outlive every global
// revocation: the tombstone a login of that sid still in flight would
// find, and the used logout token's ID.
func endProviderSessionBackChannel(t *testing.T, c *client, cl *cluster, in *signIns) []keptAux {
	t.Helper()
	sid := "ended-" + randomHex(6)
	ended := everyKind{all: []testSession{c.providerSession(t, cl.a, in.provider, sid).testSession}}
	ended.expect(t, c, cl, true)
	logout, jti := in.provider.logoutToken(t, providerSubject, sid)
	body := url.Values{"logout_token": {logout}}.Encode()
	r, err := c.do(http.MethodPost, cl.b.srv.URL+"/auth/backchannel-logout/"+providerName, "", strings.NewReader(body),
		"Content-Type", "application/x-www-form-urlencoded")
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("back-channel logout through B: %v, status %d: %s", err, r.status, r.body)
	}
	ended.expect(t, c, cl, false)
	return []keptAux{
		snapshotAux(t, cl, "the back-channel logout's tombstone", oidcbffKey("ended-sid", providerIndexID(sid))),
		snapshotAux(t, cl, "the used logout token's ID", oidcbffKey("jti", providerIndexID(jti))),
	}
}

// oidcbffKey and providerIndexID name oidcbff's auxiliary records as its
// unexported recordKey and indexID do. Should those change, the records
// are not found before the revocation and the test says so.
func oidcbffKey(kind, id string) cloakroom.Key { return cloakroom.AuxKey("oidcbff", kind, id) }

func providerIndexID(value string) string { return providerName + "\x00" + value }

// keptAux is an auxiliary record as it was before a revocation.
type keptAux struct {
	what string
	rec  cloakroom.AuxRecord
}

// snapshotAux finds the record on every node and returns it as node A's
// store has it.
func snapshotAux(t *testing.T, cl *cluster, what string, key cloakroom.Key) keptAux {
	t.Helper()
	rec := findAuxEverywhere(t, cl, what, key, true)
	if rec.EndsWithSessions {
		t.Fatalf("%s ends with the sessions", what)
	}
	return keptAux{what: what, rec: rec}
}

// expectUnchanged fails unless every node's store still has the record as
// it was.
func (k keptAux) expectUnchanged(t *testing.T, cl *cluster) {
	t.Helper()
	got := findAuxEverywhere(t, cl, k.what, k.rec.Key, true)
	if got.Version != k.rec.Version || !got.Expires.Equal(k.rec.Expires) || got.EndsWithSessions != k.rec.EndsWithSessions ||
		got.Epoch != k.rec.Epoch || !bytes.Equal(got.Data, k.rec.Data) {
		t.Errorf("%s changed: version %d, expires %v, %d bytes; was version %d, expires %v, %d bytes",
			k.what, got.Version, got.Expires, len(got.Data), k.rec.Version, k.rec.Expires, len(k.rec.Data))
	}
}

// findAuxEverywhere looks key up through every node's store and fails
// unless each finds it, or none does, as want says. It returns node A's
// answer.
func findAuxEverywhere(t *testing.T, cl *cluster, what string, key cloakroom.Key, want bool) cloakroom.AuxRecord {
	t.Helper()
	var first cloakroom.AuxRecord
	for i, n := range cl.nodes() {
		rec, found, err := n.store.store.FindAux(context.Background(), key)
		if err != nil {
			t.Fatalf("node %s: FindAux of %s: %v", n.name, what, err)
		}
		if found != want {
			t.Fatalf("node %s: %s found = %v, want %v", n.name, what, found, want)
		}
		if i == 0 {
			first = rec
		}
	}
	return first
}

// testSession is one session of the test and how a node is asked about
// it.
type testSession struct {
	kind string
	// check asks n whether it serves the session: accepted, refused (401),
	// or an error for any other answer.
	check func(c *client, n *node) (accepted bool, err error)
}

// everyKind is a session of each kind.
type everyKind struct {
	all []testSession
	// providerRef and providerSID name the provider session's records.
	providerRef, providerSID string
}

// signInEveryKind starts a session of each kind, each through another node
// as round goes on, and checks that every node serves each.
func signInEveryKind(t *testing.T, c *client, cl *cluster, in *signIns, round int) everyKind {
	t.Helper()
	through := func(i int) *node { return cl.nodes()[(round+i)%3] }
	local, _ := c.login(t, through(0))
	sid := fmt.Sprintf("round-%d-%s", round, randomHex(6))
	provider := c.providerSession(t, through(1), in.provider, sid)
	ref, err := through(1).sessionValue(provider.token, oidcbff.ValueRef)
	if err != nil || ref == "" {
		t.Fatalf("the provider session's %s value: %q, %v", oidcbff.ValueRef, ref, err)
	}
	s := everyKind{
		all: []testSession{
			{kind: "local", check: func(c *client, n *node) (bool, error) {
				status, user, err := c.whoami(n, local)
				if err != nil {
					return false, err
				}
				return judge("local", status, user, userName)
			}},
			provider.testSession,
			c.vaultSession(t, through(2)),
			c.anonymousSession(t, through(3)),
		},
		providerRef: ref, providerSID: sid,
	}
	s.expect(t, c, cl, true)
	return s
}

// expect asks every node about every session, twice (the first answer
// may fill a cache, the second come from it), and fails unless each
// answer is accepted as want says.
func (s everyKind) expect(t *testing.T, c *client, cl *cluster, want bool) {
	t.Helper()
	for _, ts := range s.all {
		for _, n := range cl.nodes() {
			for range 2 {
				accepted, err := ts.check(c, n)
				if err != nil {
					t.Fatalf("node %s, %s session: %v", n.name, ts.kind, err)
				}
				if accepted != want {
					t.Fatalf("node %s, %s session: accepted = %v, want %v", n.name, ts.kind, accepted, want)
				}
			}
		}
	}
}

// judge reads a node's answer about a session: accepted when 200 for the
// session's own user, refused when 401; anything else is an error.
func judge(kind string, status int, got, want string) (bool, error) {
	switch {
	case status == http.StatusUnauthorized:
		return false, nil
	case status != http.StatusOK:
		return false, fmt.Errorf("%s session: status %d", kind, status)
	case got != want:
		return false, fmt.Errorf("%s session answered for %q, want %q", kind, got, want)
	}
	return true, nil
}

// providerSession is a provider's user's session and its token.
type providerSession struct {
	testSession
	token string
}

// providerSession signs the provider's user in through n, in the provider
// session sid, following the redirects as a browser does.
func (c *client) providerSession(t *testing.T, n *node, p *mockProvider, sid string) providerSession {
	t.Helper()
	p.Queue(testoidc.User{Subject: providerSubject, Email: providerSubject + "@example.com", SID: sid})
	r, err := c.do(http.MethodGet, n.srv.URL+"/auth/login/"+providerName, "", nil, "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "none")
	if err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("provider login through %s: %v, status %d: %s", n.name, err, r.status, r.body)
	}
	state := cookieValue(r.header, oidcbff.StateCookieName)
	r, err = c.do(http.MethodGet, r.header.Get("Location"), "", nil)
	if err != nil || r.status != http.StatusFound {
		t.Fatalf("the provider's authorization endpoint: %v, status %d: %s", err, r.status, r.body)
	}
	r, err = c.do(http.MethodGet, r.header.Get("Location"), "", nil,
		"Cookie", oidcbff.StateCookieName+"="+state, "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "cross-site")
	if err != nil || r.status != http.StatusSeeOther {
		t.Fatalf("provider callback through %s: %v, status %d: %s", n.name, err, r.status, r.body)
	}
	token := cookieToken(r.header)
	if token == "" {
		t.Fatalf("provider callback through %s set no session cookie", n.name)
	}
	user := oidcbff.UserID(providerName, providerSubject)
	return providerSession{token: token, testSession: testSession{kind: "provider", check: func(c *client, n *node) (bool, error) {
		status, got, err := c.whoami(n, token)
		if err != nil {
			return false, err
		}
		return judge("provider", status, got, user)
	}}}
}

// vaultSession signs the app's user in through the vault route of n: the
// gateway keeps the JWT the app answers and gives the client a
// placeholder, which the client sends back with every call.
func (c *client) vaultSession(t *testing.T, n *node) testSession {
	t.Helper()
	r, err := c.do(http.MethodPost, n.srv.URL+vaultPrefix+"login", "", strings.NewReader(`{"user":"`+vaultUserName+`"}`), "Content-Type", "application/json")
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("vault login through %s: %v, status %d: %s", n.name, err, r.status, r.body)
	}
	var answer struct {
		Token string `json:"token"`
	}
	token := cookieToken(r.header)
	if json.Unmarshal(r.body, &answer) != nil || answer.Token == "" || strings.Count(answer.Token, ".") == 2 || token == "" {
		t.Fatalf("vault login through %s answered %s, session cookie %q: want a placeholder and a session", n.name, r.body, token)
	}
	want := fmt.Sprintf("%s as %s", vaultUserName, signin.VaultUser(vaultPrefix, vaultUserName))
	return testSession{kind: "vault", check: func(c *client, n *node) (bool, error) {
		r, err := c.do(http.MethodGet, n.srv.URL+vaultPrefix+"whoami", token, nil, "Authorization", "Bearer "+answer.Token)
		if err != nil {
			return false, err
		}
		if r.status != http.StatusOK {
			return judge("vault", r.status, "", want)
		}
		var who struct{ User, Forwarded string }
		if err := json.Unmarshal(r.body, &who); err != nil {
			return false, fmt.Errorf("vault session: the app answered %q: %w", r.body, err)
		}
		return judge("vault", r.status, who.User+" as "+who.Forwarded, want)
	}}
}

// anonymousSession starts an anonymous session through n's own
// application.
func (c *client) anonymousSession(t *testing.T, n *node) testSession {
	t.Helper()
	r, err := c.do(http.MethodPost, n.app.URL+"/anonymous", "", nil)
	token := cookieToken(r.header)
	if err != nil || r.status != http.StatusOK || token == "" {
		t.Fatalf("anonymous session through %s: %v, status %d, cookie %q: %s", n.name, err, r.status, token, r.body)
	}
	value := string(r.body)
	return testSession{kind: "anonymous", check: func(c *client, n *node) (bool, error) {
		r, err := c.do(http.MethodGet, n.app.URL+"/anonymous", token, nil)
		if err != nil {
			return false, err
		}
		return judge("anonymous", r.status, string(r.body), value)
	}}
}

// revokeEveryone calls the admin API of n to end every session.
func (c *client) revokeEveryone(n *node, adminToken string) (reply, error) {
	return c.do(http.MethodPost, n.admin.URL+"/admin/sessions/revoke-all", "", nil, "Authorization", "Bearer "+adminToken)
}

// sessionValue reads a value of the session token names, through n's
// manager.
func (n *node) sessionValue(token, key string) (string, error) {
	req := httptest.NewRequest(http.MethodGet, "http://node.test/", nil)
	req.Header.Set("Cookie", cookieName+"="+token)
	var value string
	var err error
	n.manager.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := n.manager.Session(r)
		value, err = s.GetString(key), s.Err()
	})).ServeHTTP(httptest.NewRecorder(), req)
	return value, err
}

// signIns are the ways into the nodes of a cluster besides the local
// account, and their admin API; the nodes share them (and one sealing
// key), as the nodes of one deployment do.
type signIns struct {
	adminToken string
	sealer     *seal.Keyring
	provider   *mockProvider
	app        *jwtApp
}

func newSignIns(t *testing.T) *signIns {
	t.Helper()
	sealer, err := seal.Generate("multinode")
	if err != nil {
		t.Fatal(err)
	}
	return &signIns{adminToken: randomHex(gateway.MinAdminTokenLength), sealer: sealer, provider: startMockProvider(t), app: newJWTApp(t)}
}

// routes are the proxy routes the sign-ins add: the vault's.
func (in *signIns) routes(t *testing.T) []proxy.Route {
	t.Helper()
	route, err := proxy.ParseRoute(vaultPrefix + "=" + in.app.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return []proxy.Route{route}
}

// configure adds the sign-ins to the configuration of the gateway that
// listens at publicURL.
func (in *signIns) configure(t *testing.T, cfg *gateway.Config, publicURL string) {
	t.Helper()
	cfg.AdminToken = in.adminToken
	client, err := oidcbff.New(context.Background(), oidcbff.Config{
		Providers: []oidcbff.ProviderConfig{in.provider.config()},
		Admission: cfg.Admission, PublicURL: publicURL, Sealer: in.sealer, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.OIDC = client
	capture, err := vault.ParseCapture("POST " + vaultPrefix + "login token")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Vault, err = vault.New(vault.Config{
		Admission: cfg.Admission, Sealer: in.sealer, Logger: quiet,
		Routes: []vault.Route{{Prefix: vaultPrefix, Capture: []vault.Capture{capture}}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mockProvider is the OpenID provider of the test (see testoidc).
type mockProvider struct{ *testoidc.Mock }

func startMockProvider(t *testing.T) *mockProvider {
	t.Helper()
	return &mockProvider{testoidc.Start(t, nil)}
}

func (p *mockProvider) config() oidcbff.ProviderConfig {
	cfg := p.Config()
	return oidcbff.ProviderConfig{
		Name: providerName, Issuer: cfg.Issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		TokenAuth: "post", // mockoidc reads the secret from the form only
	}
}

// logoutToken returns a back-channel logout token for the provider session
// sid of sub, signed by the provider, and its ID.
func (p *mockProvider) logoutToken(t *testing.T, sub, sid string) (token, jti string) {
	t.Helper()
	cfg := p.Config()
	claims := testoidc.LogoutClaims(cfg.Issuer, cfg.ClientID, time.Now(), sub, sid)
	token, err := p.Keypair().SignJWT(claims)
	if err != nil {
		t.Fatal(err)
	}
	return token, claims["jti"].(string)
}

// jwtApp is an app of the kind the vault sits in front of: its login
// answers with a JWT in the body, and it takes the JWT back as
// "Authorization: Bearer". It knows nothing of cloakroom.
type jwtApp struct {
	srv *httptest.Server
	key []byte
}

func newJWTApp(t *testing.T) *jwtApp {
	t.Helper()
	a := &jwtApp{key: []byte(randomHex(32))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+vaultPrefix+"login", func(w http.ResponseWriter, r *http.Request) {
		var login struct{ User string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&login); err != nil || login.User == "" {
			http.Error(w, "a user is required", http.StatusBadRequest)
			return
		}
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": login.User, "exp": time.Now().Add(time.Hour).Unix()}).SignedString(a.key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"token": token})
	})
	mux.HandleFunc("GET "+vaultPrefix+"whoami", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var claims jwt.RegisteredClaims
		if _, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return a.key, nil }, jwt.WithValidMethods([]string{"HS256"})); !ok || err != nil {
			http.Error(w, "no valid token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"user": claims.Subject, "forwarded": r.Header.Get("X-Forwarded-User")})
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

// everyoneRow is one store's revoke-everyone figures.
type everyoneRow struct {
	variant  string
	rounds   int
	during   int            // checks that started while the admin call ran
	checks   int            // checks that started after the admin call's response
	accepted map[string]int // of those, the accepted ones, per node
	calls    durations      // the admin call, from sending it to its response
}

func (r everyoneRow) acceptedPerNode() string {
	var parts []string
	for _, name := range []string{"A", "B", "C"} {
		parts = append(parts, fmt.Sprintf("%s %d", name, r.accepted[name]))
	}
	return strings.Join(parts, ", ")
}

func formatEveryoneRows(rows []everyoneRow) string {
	var b strings.Builder
	b.WriteString("Three gateways share one store. Per revocation, a local account's, a provider's user's (mockoidc), a vault user's and an anonymous session are each checked on every node back to back while the admin API of one node (A, B, C in turn) revokes everyone; every check that started after the admin call's response is counted.\n\n")
	b.WriteString("| store | revocations | checks during the call | checks after the response | accepted after the response | admin call p50 / max |\n")
	b.WriteString("| --- | ---: | ---: | ---: | --- | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s / %s |\n", r.variant, r.rounds, r.during, r.checks, r.acceptedPerNode(), ms(r.calls.quantile(0.5)), ms(r.calls.max()))
	}
	return b.String()
}
