package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// assembleParts are the parts of a gateway with a vault route, on memory
// stores.
func assembleParts(t *testing.T) (gateway.Parts, *memstore.Store) {
	t.Helper()
	mem := memstore.New(memstore.Config{})
	t.Cleanup(func() { mem.Close() })
	keys, err := seal.Generate("test")
	if err != nil {
		t.Fatal(err)
	}
	capture, err := vault.ParseCapture("POST /api/login token")
	if err != nil {
		t.Fatal(err)
	}
	upstream, _ := url.Parse("http://127.0.0.1:1")
	return gateway.Parts{
		Sessions:     cloakroom.Config{Store: mem},
		AccountStore: memaccounts.New(),
		Accounts:     accounts.Config{Throttle: memaccounts.NewThrottle(0)},
		Vault: &vault.Config{
			Sealer: keys,
			Routes: []vault.Route{{Prefix: "/api/", Capture: []vault.Capture{capture}, UserClaim: "sub"}},
		},
		Gateway: gateway.Config{Routes: []proxy.Route{{Prefix: "/api/", Upstream: upstream}}},
	}, mem
}

// The parts Assemble builds are linked to each other: a sign-in through
// the stack's admission lands in its session manager, and disabling the
// account through its account service ends that session in the store.
func TestAssembleLinksTheParts(t *testing.T) {
	ctx := context.Background()
	parts, mem := assembleParts(t)
	st, err := gateway.Assemble(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if st.Vault == nil || st.OIDC != nil || st.Admission.Sessions() != st.Sessions {
		t.Fatalf("stack: vault %v, OIDC %v, admission's manager is the stack's: %v", st.Vault != nil, st.OIDC != nil, st.Admission.Sessions() == st.Sessions)
	}
	if err := st.Accounts.Add(ctx, "alice", "correct horse battery staple", nil, ""); err != nil {
		t.Fatal(err)
	}
	admit := st.Sessions.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := signin.Identity{UserID: signin.LocalUser("alice"), Method: signin.Password, AMR: []string{"pwd"}, AuthTime: st.Admission.Now()}
		if err := st.Admission.Admit(r.Context(), r, w.Header(), id); err != nil {
			t.Error(err)
		}
	}))
	admit.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "https://app.test/login", nil))
	if recs, err := mem.List(ctx, "alice"); err != nil || len(recs) != 1 {
		t.Fatalf("after the sign-in: %d sessions, %v; want 1", len(recs), err)
	}
	if err := st.Accounts.Disable(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if recs, err := mem.List(ctx, "alice"); err != nil || len(recs) != 0 {
		t.Fatalf("after disabling the account: %d sessions, %v; want none", len(recs), err)
	}
}

// Assemble refuses links it cannot make, with the configuration error.
func TestAssembleRefuses(t *testing.T) {
	for name, change := range map[string]func(*gateway.Parts){
		"a vault prefix without its route": func(p *gateway.Parts) {
			p.Gateway.Routes[0].Prefix = "/other/"
		},
		"token relay without providers": func(p *gateway.Parts) {
			p.Relay = []string{"/api/"}
		},
		"no session store": func(p *gateway.Parts) {
			p.Sessions.Store = nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			parts, _ := assembleParts(t)
			change(&parts)
			st, err := gateway.Assemble(context.Background(), parts)
			if err == nil {
				st.Close()
				t.Fatal("assembled")
			}
			if name != "no session store" && !errors.Is(err, gateway.ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}
