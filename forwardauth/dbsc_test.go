package forwardauth_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/dbsc/dbsctest"
	"github.com/cloakroom/cloakroom/gateway"
)

// Forward-auth decisions enforce device binding as the gateway's own
// routes do, through the same core hook: a bound session is vouched for
// with its bound cookie, a copy of its cookies is refused once the bound
// cookie expires (401, no user), while the browser that refreshes through
// the gateway's /auth/dbsc endpoints goes on.
func TestDecisionEnforcesDeviceBinding(t *testing.T) {
	const lifetime = 10 * time.Second
	key := make([]byte, 32)
	rand.Read(key)
	s := newStackWith(t, nil, nil, func(p *gateway.Parts) {
		p.Binding = &dbsc.Config{Key: key, CookieLifetime: lifetime}
	})
	deviceKey, err := dbsctest.NewKey(dbsc.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	browser := dbsctest.New(s.srv.URL, s.srv.Client(), deviceKey)
	browser.Now = s.clock.Now
	ctx := context.Background()
	body, _ := json.Marshal(map[string]string{"username": "root", "password": password})
	if r, err := browser.Do(ctx, http.MethodPost, "/auth/login", body, nil); err != nil || r.Status != http.StatusOK {
		t.Fatalf("sign-in: %v %+v", err, r)
	}
	if browser.Session() == nil {
		t.Fatal("the browser did not register")
	}
	proxy := newClient(t, s.srv.URL, "")
	ask := func(jar map[string]string) response {
		var cookies []string
		for name, value := range jar {
			cookies = append(cookies, name+"="+value)
		}
		return nginxAsk(proxy, "GET", "127.0.0.1", "/admin/", "Cookie", strings.Join(cookies, "; "), "Sec-Fetch-Mode", "cors")
	}
	stolen := browser.Jar()
	if res := ask(stolen); res.status != http.StatusOK || res.header.Get("X-Forwarded-User") != "root" {
		t.Fatalf("with the bound cookie: %d %q", res.status, res.header.Get("X-Forwarded-User"))
	}
	s.clock.Advance(lifetime)
	if res := ask(stolen); res.status != http.StatusUnauthorized || res.header.Get("X-Forwarded-User") != "" {
		t.Fatalf("the copy after the bound cookie expired: %d %q", res.status, res.header.Get("X-Forwarded-User"))
	}
	if err := browser.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if res := ask(browser.Jar()); res.status != http.StatusOK || res.header.Get("X-Forwarded-User") != "root" {
		t.Fatalf("the browser after its refresh: %d %q", res.status, res.header.Get("X-Forwarded-User"))
	}
}
