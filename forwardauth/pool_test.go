package forwardauth_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/signin"
)

// headerWriter keeps the answer's status and headers only.
type headerWriter struct {
	h    http.Header
	code int
}

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerWriter) WriteHeader(code int)        { w.code = code }

// decisionHandler is forward auth on a memstore manager for the host
// app.example.com, and a function that signs a user in with roles and
// returns their session cookie.
func decisionHandler(t *testing.T) (*forwardauth.Handler, func(user string, roles ...string) string) {
	t.Helper()
	return decisionHandlerFor(t, forwardauth.Rule{Host: "app.example.com"})
}

// decisionHandlerFor is decisionHandler with the given rules.
func decisionHandlerFor(t *testing.T, rules ...forwardauth.Rule) (*forwardauth.Handler, func(user string, roles ...string) string) {
	t.Helper()
	store := memstore.New(memstore.Config{})
	t.Cleanup(func() { store.Close() })
	m, err := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	h, err := forwardauth.New(forwardauth.Config{
		Sessions: m,
		Proxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Rules:    rules,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	signIn := func(user string, roles ...string) string {
		rolesJSON := "[" + strings.Join(quoteAll(roles), ",") + "]"
		login := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := m.Session(r)
			if err := s.Login(r.Context(), user, cloakroom.LoginOptions{Values: map[string]string{signin.ValueRoles: rolesJSON, signin.ValueEmail: user + "@example.com", signin.ValueAMR: "pwd hwk user pin mfa"}}); err != nil {
				t.Error(err)
			}
		}))
		rec := httptest.NewRecorder()
		login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		return strings.SplitN(rec.Header().Get("Set-Cookie"), ";", 2)[0]
	}
	return h, signIn
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func nginxDecision(cookie string) *http.Request {
	req := httptest.NewRequest("GET", "/auth/forward/nginx", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URL", "https://app.example.com/items?page=2")
	req.Header.Set("Accept", "application/json")
	return req
}

// Decisions reuse their state (the rebuilt request, its headers): one
// decision must never answer with what another request carried. Users
// with and without a session decide at once; each answer must be its own.
func TestDecisionsShareNothing(t *testing.T) {
	h, signIn := decisionHandler(t)
	cookies := map[string]string{"alice": signIn("alice", "dev"), "bob": signIn("bob", "ops", "admin"), "": ""}
	wantGroups := map[string]string{"alice": "dev", "bob": "ops,admin"}
	var wg sync.WaitGroup
	for user, cookie := range cookies {
		for range 4 {
			wg.Go(func() {
				for range 200 {
					w := &headerWriter{h: http.Header{}}
					h.ServeHTTP(w, nginxDecision(cookie))
					switch {
					case user == "" && (w.code != http.StatusUnauthorized || w.h.Get(forwardauth.HeaderUser) != ""):
						t.Errorf("no session: %d for %q, want 401 for nobody", w.code, w.h.Get(forwardauth.HeaderUser))
						return
					case user != "" && (w.code != http.StatusOK || w.h.Get(forwardauth.HeaderUser) != user || w.h.Get(forwardauth.HeaderGroups) != wantGroups[user]):
						t.Errorf("%s: %d for %q with groups %q", user, w.code, w.h.Get(forwardauth.HeaderUser), w.h.Get(forwardauth.HeaderGroups))
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestDecisionAllocations pins a decision's allocations on the hot path (a
// signed-in GET through the nginx adapter, memstore, a user with two
// roles who signed in with a password and a passkey): parsing the
// forwarded URL (2: once, by the adapter), the core's writer (1), the email, roles and amr
// values read from the record (3), the roles list (1), the groups and amr
// headers (2) and the answer's identity values (1). The rebuilt
// request, its headers, the core's middleware around the decision and the
// writer that drops the core's answer are reused: 23 allocations before.
func TestDecisionAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	h, signIn := decisionHandler(t)
	req := nginxDecision(signIn("alice", "dev", "ops"))
	w := &headerWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	if w.code != http.StatusOK || w.h.Get(forwardauth.HeaderGroups) != "dev,ops" || w.h.Get(forwardauth.HeaderAMR) != "pwd,hwk,user,pin,mfa" {
		t.Fatalf("decision: %d, groups %q, amr %q; want 200 with dev,ops and pwd,hwk,user,pin,mfa", w.code, w.h.Get(forwardauth.HeaderGroups), w.h.Get(forwardauth.HeaderAMR))
	}
	if allocs > 10 {
		t.Errorf("%.1f allocations per decision, want at most 10", allocs)
	}
}
