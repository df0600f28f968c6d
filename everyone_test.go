package cloakroom_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

// TestRevokeEveryoneEndsEverySession: every session ends, of every user
// and anonymous ones; sign-ins afterwards work as usual.
func TestRevokeEveryoneEndsEverySession(t *testing.T) {
	a := newApp(t, nil)
	tokens := []string{a.login("alice"), a.login("alice"), a.login("bob"), a.login("corp:carol"), a.login("/api/:dave")}
	anon := sessionCookie(a.do("POST", "/put?k=cart&v=1", ""))
	if anon == nil {
		t.Fatal("no anonymous session")
	}
	epoch, err := a.m.RevokeEveryone(context.Background())
	if err != nil || epoch != 1 {
		t.Fatalf("RevokeEveryone = %d, %v; want 1, nil", epoch, err)
	}
	for _, tok := range tokens {
		if got := a.whoami(tok); got != "user=" {
			t.Fatalf("a session survived RevokeEveryone: %q", got)
		}
	}
	if got := a.do("GET", "/get?k=cart", anon.Value).Body.String(); got != "" {
		t.Fatalf("an anonymous session survived RevokeEveryone: cart=%q", got)
	}
	if a.whoami(a.login("alice")) != "user=alice" {
		t.Fatal("a login after RevokeEveryone must work")
	}
	if got := a.do("GET", "/get?k=cart", sessionCookie(a.do("POST", "/put?k=cart&v=2", "")).Value).Body.String(); got != "2" {
		t.Fatalf("an anonymous session after RevokeEveryone: cart=%q", got)
	}
}

// TestLoginWithPinFailsAfterRevokeEveryone: a login whose credentials were
// being checked while every session was revoked creates nothing, whether
// it pinned its user or only the epoch (a user known only from the
// answer).
func TestLoginWithPinFailsAfterRevokeEveryone(t *testing.T) {
	a := newApp(t, nil)
	ctx := context.Background()
	userPin, err := a.m.Pin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	epochPin, err := a.m.PinEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.RevokeEveryone(ctx); err != nil {
		t.Fatal(err)
	}
	for name, login := range map[string]func(ctx context.Context, s *cloakroom.Session) error{
		"user pin": func(ctx context.Context, s *cloakroom.Session) error {
			return s.Login(ctx, "alice", cloakroom.LoginOptions{Pin: userPin})
		},
		"epoch pin": func(ctx context.Context, s *cloakroom.Session) error {
			return s.Login(ctx, "/api/:u", cloakroom.LoginOptions{Pin: epochPin})
		},
	} {
		w := a.park("", login)()
		if w.Code != http.StatusUnauthorized || sessionCookie(w) != nil {
			t.Errorf("%s: status %d, cookie %v; want 401 and none", name, w.Code, sessionCookie(w))
		}
	}
	if n := a.liveSessions("alice") + a.liveSessions("/api/:u"); n != 0 {
		t.Fatalf("%d live sessions, want 0", n)
	}
}

// TestWatchEndsWithRevokeEveryone: streams held open by a session end when
// every session is revoked, on another node too.
func TestWatchEndsWithRevokeEveryone(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	store := memstore.New(memstore.Config{Now: clock.Now})
	defer store.Close()
	a, b := watchManager(t, store, clock), watchManager(t, store, clock)
	alice, bob := watchFor(t, a, loginThrough(t, a, "alice")), watchFor(t, a, loginThrough(t, a, "bob"))
	if _, err := b.RevokeEveryone(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, alice, "RevokeEveryone on another node")
	waitEnded(t, bob, "RevokeEveryone on another node")
	// One opened afterwards lives.
	fresh := watchFor(t, a, loginThrough(t, a, "alice"))
	if fresh.Err() != nil {
		t.Fatal("a watch of a session created after RevokeEveryone ended")
	}
}

func TestValidHandle(t *testing.T) {
	a := newApp(t, nil)
	handle := ""
	h := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.m.Session(r)
		if err := s.Login(r.Context(), "alice", cloakroom.LoginOptions{}); err != nil {
			t.Fatal(err)
		}
		handle = s.Handle()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil))
	for h, want := range map[string]bool{
		handle: true, "AAAAAAAAAAAAAAAAAAAAAA": true,
		"": false, "a-b_c": false, "a/b": false, "a b": false, "AAAAAAAAAAAAAAAAAAAAA=": false,
		"AAAAAAAAAAAAAAAAAAAAAB": false, // not the canonical encoding of 16 bytes
		strings.Repeat("a", 65):  false, "é": false, "..": false,
	} {
		if got := cloakroom.ValidHandle(h); got != want {
			t.Errorf("ValidHandle(%q) = %v, want %v", h, got, want)
		}
	}
}
