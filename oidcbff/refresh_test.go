package oidcbff_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// ttlOf is how long each provider's access tokens live.
var ttlOf = map[string]time.Duration{"mock": 10 * time.Minute, "zitadel": 5 * time.Minute}

// relay sends one same-origin fetch to /api/ through b's gateway without
// touching the test's T (it runs in goroutines) and returns the status and
// the digest of the bearer token the upstream saw.
func (b *browser) relay() (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, b.node.srv.URL+"/api/data", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v map[string]string
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &v); err != nil {
			return resp.StatusCode, "", err
		}
	}
	return resp.StatusCode, v["bearer"], nil
}

// TestRefreshSingleFlight: shortly before the access token expires, 50
// concurrent requests of one session through 3 gateways on one store (a
// shared memstore; Redis, a client and client-side cache per gateway) cause
// exactly one refresh at the provider; every request goes upstream with the
// new access token. zitadel rotates refresh tokens and refuses a spent one,
// so a second use would have ended the session; a later refresh works with
// the rotated token.
func TestRefreshSingleFlight(t *testing.T) {
	for _, store := range []string{"memstore", "redis-cached"} {
		for _, pc := range providerCases(t) {
			t.Run(store+"/"+pc.name, func(t *testing.T) { testRefreshSingleFlight(t, pc, store) })
		}
	}
}

// stores returns the store setup of an env: one memstore shared by the
// gateways, or a Redis store per gateway, with or without its client-side
// cache.
func stores(t *testing.T, kind string) storeFor {
	switch kind {
	case "redis":
		return onRedis(t, false)
	case "redis-cached":
		return onRedis(t, true)
	}
	return nil
}

func testRefreshSingleFlight(t *testing.T, pc *providerCase, store string) {
	e := newEnvOn(t, 3, func(urls []string) *provider { return pc.start(t, urls) }, stores(t, store), nil)
	b := e.browser(e.nodes[0])
	b.mustLogin()
	status, first, err := b.relay()
	if err != nil || status != http.StatusOK || first == "" {
		t.Fatalf("first relayed request: %d %q %v", status, first, err)
	}
	if n := e.p.tokens.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes before expiry", n)
	}

	for round := 1; round <= 2; round++ {
		// Into the refresh window: the token expires in 30 s.
		e.clock.Advance(ttlOf[pc.name] - 30*time.Second)
		if e.p.mock != nil {
			e.p.mock.fastForward(ttlOf[pc.name]) // new tokens differ from the old
		}
		const requests = 50
		peers := []*browser{b.on(e.nodes[0]), b.on(e.nodes[1]), b.on(e.nodes[2])}
		var wg sync.WaitGroup
		results := make([]string, requests)
		errs := make(chan error, requests)
		for i := range requests {
			wg.Go(func() {
				status, bearer, err := peers[i%3].relay()
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("request %d: status %d", i, status)
				}
				if err != nil {
					errs <- err
				}
				results[i] = bearer
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := e.p.tokens.refreshes.Load(); n != int64(round) {
			t.Fatalf("round %d: %d refreshes at the provider, want %d\n%s", round, n, round, e.logs.String())
		}
		tokens := e.p.tokens.all()
		for i, got := range results {
			if got == first || got == "" {
				t.Fatalf("round %d: request %d went upstream with the old access token", round, i)
			}
			if got != results[0] {
				t.Fatalf("round %d: requests used different access tokens", round)
			}
		}
		if !containsDigest(tokens, results[0]) {
			t.Fatal("the upstream got a token the provider never issued")
		}
		first = results[0]
	}
}

// TestRevokedRefreshEndsSession: when the provider refuses the refresh
// (the user's grant was revoked there), the session ends on every node and
// the SPA gets 401 JSON.
func TestRevokedRefreshEndsSession(t *testing.T) {
	for _, pc := range providerCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			e := newEnv(t, 2, func(urls []string) *provider { return pc.start(t, urls) })
			b := e.browser(e.nodes[0])
			b.mustLogin()
			e.p.revoke()
			e.clock.Advance(ttlOf[pc.name] - 30*time.Second)
			r := b.fetch(http.MethodGet, "/api/data")
			if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "unauthenticated" {
				t.Fatalf("relayed request after revocation: %d %s", r.Status, r.Text)
			}
			if n := e.p.tokens.refreshes.Load(); n != 1 {
				t.Fatalf("%d refresh attempts, want 1", n)
			}
			other := b.on(e.nodes[1])
			if s := other.fetch(http.MethodGet, "/plain/data").Status; s != http.StatusUnauthorized {
				t.Fatalf("the session still works on the other node: %d", s)
			}
			if s := b.fetch(http.MethodGet, "/auth/session").Status; s != http.StatusUnauthorized {
				t.Fatalf("the session still works: %d", s)
			}
			e.assertNoTokens(nil, b, other)
		})
	}
}
