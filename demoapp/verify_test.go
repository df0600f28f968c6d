package demoapp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/demoapp"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// TestVerifiedRefusesForgedIdentity: behind Verified, as `cloakroom demo`
// runs it, the notes API refuses X-Forwarded-User from any local process
// without the gateway's JWT for that user and audience, and a replayed
// token; a fresh one gets in.
func TestVerifiedRefusesForgedIdentity(t *testing.T) {
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "http://gateway.test", Audience: "default"})
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(signer.JWKSHandler())
	t.Cleanup(jwks.Close)
	h, err := demoapp.Verified(demoapp.API(), demoapp.VerifyConfig{JWKSURL: jwks.URL, Audience: "/api/", Issuer: "http://gateway.test"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	get := func(user, token string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/me", nil)
		req.Header.Set(demoapp.HeaderUser, user)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	sign := func(user, audience string) string {
		tok, err := signer.SignFor(upstreamjwt.Identity{User: user}, audience, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if s := get("alice", ""); s != http.StatusUnauthorized {
		t.Errorf("forged header alone: %d, want 401", s)
	}
	if s := get("alice", sign("mallory", "/api/")); s != http.StatusUnauthorized {
		t.Errorf("mallory's token with alice's header: %d, want 401", s)
	}
	if s := get("alice", sign("alice", "/other/")); s != http.StatusUnauthorized {
		t.Errorf("another route's token: %d, want 401", s)
	}
	token := sign("alice", "/api/")
	if s := get("alice", token); s != http.StatusOK {
		t.Fatalf("the gateway's token: %d, want 200", s)
	}
	if s := get("alice", token); s != http.StatusUnauthorized {
		t.Errorf("the same token again: %d, want 401", s)
	}
}
