// Package testoidc runs an OpenID provider for tests:
// github.com/oauth2-proxy/mockoidc on a loopback port, serving one request
// at a time, whose users' ID tokens may name a provider session (sid) and
// an authentication time, with the claims of back-channel logout tokens it
// would sign.
package testoidc

import (
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// Mock is a running mockoidc. Its handlers share maps without locks, so
// it serves one request at a time, and its state (user queue, sessions,
// clock) is changed through Do or Queue.
type Mock struct {
	m  *mockoidc.MockOIDC
	mu sync.Mutex
}

// Start starts a provider, stopped when t ends. wrap, when not nil, sees
// every request first, before the provider serves it in turn.
func Start(t testing.TB, wrap func(http.Handler) http.Handler) *Mock {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &Mock{m: m}
	err = m.AddMiddleware(func(next http.Handler) http.Handler {
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			defer p.mu.Unlock()
			next.ServeHTTP(w, r)
		})
		if wrap != nil {
			h = wrap(h)
		}
		return h
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return p
}

// Config returns the provider's issuer and client credentials.
func (p *Mock) Config() *mockoidc.Config { return p.m.Config() }

// Keypair returns the key the provider signs with.
func (p *Mock) Keypair() *mockoidc.Keypair { return p.m.Keypair }

// Do runs f on the provider while it serves no request.
func (p *Mock) Do(f func(m *mockoidc.MockOIDC)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.m)
}

// User is a user the provider signs in.
type User struct {
	Subject, Email string
	Groups         []string
	// SID, when not empty, is the provider session the ID token names.
	SID string
	// AuthTime, when not zero, is the ID token's auth_time.
	AuthTime time.Time
	// Unverified has the ID token say email_verified false (mockoidc
	// leaves a false value out).
	Unverified bool
	// AMR, when not empty, is the ID token's amr claim.
	AMR []string
}

// Queue has the provider sign u in at its next authorization request.
func (p *Mock) Queue(u User) {
	p.Do(func(m *mockoidc.MockOIDC) {
		m.QueueUser(&user{
			MockUser: &mockoidc.MockUser{Subject: u.Subject, Email: u.Email, EmailVerified: !u.Unverified, Groups: u.Groups, PreferredUsername: u.Subject},
			u:        u,
		})
	})
}

// user adds the claims mockoidc has no field for.
type user struct {
	*mockoidc.MockUser
	u User
}

func (u *user) Claims(scopes []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	inner, err := u.MockUser.Claims(scopes, base)
	if err != nil {
		return nil, err
	}
	// Flatten through JSON: the embedded claims keep their own fields.
	b, err := json.Marshal(inner)
	if err != nil {
		return nil, err
	}
	var m jwt.MapClaims
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if u.u.SID != "" {
		m["sid"] = u.u.SID
	}
	if !u.u.AuthTime.IsZero() {
		m["auth_time"] = u.u.AuthTime.Unix()
	}
	if u.u.Unverified {
		m["email_verified"] = false
	}
	if len(u.u.AMR) > 0 {
		m["amr"] = u.u.AMR
	}
	return m, nil
}

// LogoutClaims returns the claims of a valid back-channel logout token
// from issuer to the client audience, issued at now, naming sub and sid
// (either may be empty), with a fresh jti.
func LogoutClaims(issuer, audience string, now time.Time, sub, sid string) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": issuer, "aud": audience, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti":    rand.Text(),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}
