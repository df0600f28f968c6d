package oidcbff_test

import (
	"context"
	"crypto/rsa"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// zitadelStorage is the example OP's in-memory storage, with registered
// post-logout redirect URIs and a sid claim in ID tokens (the example has
// neither).
type zitadelStorage struct {
	*storage.Storage
	postLogout []string
	mu         sync.Mutex
	sid        string
}

type logoutClient struct {
	op.Client
	postLogout []string
}

func (c logoutClient) PostLogoutRedirectURIs() []string { return c.postLogout }

func (s *zitadelStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return logoutClient{Client: c, postLogout: s.postLogout}, nil
}

func (s *zitadelStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sid != "" {
		info.AppendClaims("sid", s.sid)
	}
	return nil
}

func (s *zitadelStorage) setSID(sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sid = sid
}

// zitadelProvider is the example OpenID provider of
// github.com/zitadel/oidc/v3, set up in-process on loopback.
type zitadelProvider struct {
	*provider
	storage *zitadelStorage
	// username is what the user types into the provider's login form.
	username string
	// session is the provider's own session cookie, set at its login
	// form and looked for at its end-session endpoint.
	session *providerSession
}

const (
	zitadelUserID   = "id1"
	zitadelEmail    = "test-user@zitadel.ch"
	zitadelPassword = "verysecure"
)

func newZitadelProvider(t *testing.T, gatewayURLs []string) *zitadelProvider {
	t.Helper()
	return newZitadelProviderOn(t, "127.0.0.1", gatewayURLs)
}

// newZitadelProviderOn serves the provider at http://host:port/ on a free
// loopback port. With host "localhost" it is a sibling of gateways on
// http://localhost: a browser keeps one cookie jar for every port of a host.
func newZitadelProviderOn(t *testing.T, host string, gatewayURLs []string) *zitadelProvider {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)) + "/"
	var redirects, postLogout []string
	for _, u := range gatewayURLs {
		redirects = append(redirects, u+"/auth/callback/zitadel")
		postLogout = append(postLogout, u+"/auth/login")
	}
	const secret = "zitadel-client-secret"
	clients := map[string]*storage.Client{"gateway": storage.WebClient("gateway", secret, redirects...)}
	st := &zitadelStorage{Storage: storage.NewStorageWithClients(storage.NewUserStore(issuer), clients), postLogout: postLogout}
	zp := &zitadelProvider{
		provider: &provider{name: "zitadel", issuer: issuer, clientID: "gateway", secret: secret, tokens: &tokenLog{}},
		storage:  st, username: "test-user@" + host, session: &providerSession{},
	}
	key, err := st.SigningKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	zp.key, zp.keyID = key.Key().(*rsa.PrivateKey), key.ID()
	router := exampleop.SetupServer(issuer, st, nil, false)
	srv := httptest.NewUnstartedServer(zp.session.wrap(zp.wrap(router, "/oauth/token", "/auth"), "/login/username", "/end_session"))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	zp.login = func(t *testing.T, b *browser, authURL string) string {
		t.Helper()
		r := b.get(authURL)
		if r.Status != http.StatusFound && r.Status != http.StatusSeeOther {
			t.Fatalf("zitadel authorize: status %d: %s", r.Status, r.Text)
		}
		loginPage := resolve(t, r)
		id := mustQuery(t, loginPage, "authRequestID")
		r = b.do(http.MethodPost, strings.Split(loginPage, "?")[0], strings.NewReader(url.Values{
			"id": {id}, "username": {zp.username}, "password": {zitadelPassword},
		}.Encode()), "Content-Type", "application/x-www-form-urlencoded")
		if r.Status != http.StatusFound {
			t.Fatalf("zitadel login: status %d: %s", r.Status, r.Text)
		}
		r = b.get(resolve(t, r))
		if r.Status != http.StatusFound && r.Status != http.StatusSeeOther {
			t.Fatalf("zitadel authorize callback: status %d: %s", r.Status, r.Text)
		}
		return resolve(t, r)
	}
	zp.revoke = func() {
		// What an administrator's "end all sessions" does at the provider.
		_ = st.TerminateSession(context.Background(), zitadelUserID, "gateway")
	}
	return zp
}

// resolve returns the absolute URL a redirect response points to.
func resolve(t *testing.T, r response) string {
	t.Helper()
	base, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := base.Parse(r.Header.Get("Location"))
	if err != nil || r.Header.Get("Location") == "" {
		t.Fatalf("no redirect from %s (status %d)", r.URL, r.Status)
	}
	return loc.String()
}

func mustQuery(t *testing.T, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get(name) == "" {
		t.Fatalf("%s has no %s parameter", raw, name)
	}
	return u.Query().Get(name)
}
