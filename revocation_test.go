package cloakroom_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

// park sends a request with token through the middleware and holds it
// after the session was loaded, as a slow request body would. The returned
// function lets it go on with op and returns its response.
func (a *app) park(token string, op func(context.Context, *cloakroom.Session) error) func() *httptest.ResponseRecorder {
	a.t.Helper()
	loaded, proceed := make(chan struct{}), make(chan struct{})
	done := make(chan *httptest.ResponseRecorder)
	h := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-proceed
		if err := op(r.Context(), a.m.Session(r)); err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, cloakroom.ErrNotLoggedIn) {
				status = http.StatusUnauthorized
			}
			http.Error(w, err.Error(), status)
		}
	}))
	go func() {
		r := httptest.NewRequest("POST", "/parked", nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		done <- w
	}()
	<-loaded
	return func() *httptest.ResponseRecorder {
		close(proceed)
		return <-done
	}
}

func (a *app) liveSessions(user string) int {
	a.t.Helper()
	devices, err := a.m.Devices(context.Background(), user)
	if err != nil {
		a.t.Fatal(err)
	}
	return len(devices)
}

// A request parked after loading its session must not bring the session
// back by rotating it after the user logged out, an admin revoked the
// user, or the user revoked it from another device.
func TestParkedRotationAfterRevocationCreatesNothing(t *testing.T) {
	ops := map[string]func(context.Context, *cloakroom.Session) error{
		"Renew":        func(ctx context.Context, s *cloakroom.Session) error { return s.Renew(ctx) },
		"RevokeOthers": func(ctx context.Context, s *cloakroom.Session) error { return s.RevokeOthers(ctx) },
	}
	ends := map[string]func(a *app, token string){
		"logout": func(a *app, token string) {
			if w := a.do("POST", "/logout", token); w.Code != 200 {
				a.t.Fatalf("logout: %d", w.Code)
			}
		},
		"admin revokes the user": func(a *app, token string) {
			if err := a.m.RevokeUser(context.Background(), "alice"); err != nil {
				a.t.Fatal(err)
			}
		},
		"revoke by handle": func(a *app, token string) {
			devices, _ := a.m.Devices(context.Background(), "alice")
			if err := a.m.RevokeDevice(context.Background(), "alice", devices[0].Handle); err != nil {
				a.t.Fatal(err)
			}
		},
	}
	for opName, op := range ops {
		for endName, end := range ends {
			t.Run(opName+" after "+endName, func(t *testing.T) {
				a := newApp(t, nil)
				stolen := a.login("alice")
				release := a.park(stolen, op)
				end(a, stolen)
				w := release()
				if c := sessionCookie(w); c != nil && c.Value != "" {
					t.Fatalf("parked %s answered %d with a new session cookie", opName, w.Code)
				}
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("parked %s: status %d, want 401", opName, w.Code)
				}
				if n := a.liveSessions("alice"); n != 0 {
					t.Fatalf("%d live sessions after %s, want 0", n, endName)
				}
			})
		}
	}
}

// Logging in with a pin taken before the password check fails when the
// account changed during the check, and creates no session.
func TestLoginWithPinFailsAfterAccountChange(t *testing.T) {
	a := newApp(t, nil)
	ctx := context.Background()
	pin, err := a.m.Pin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	release := a.park("", func(ctx context.Context, s *cloakroom.Session) error {
		return s.Login(ctx, "alice", cloakroom.LoginOptions{Pin: pin})
	})
	if err := a.m.RevokeUser(ctx, "alice"); err != nil { // disabled during the hash
		t.Fatal(err)
	}
	w := release()
	if w.Code != http.StatusUnauthorized || sessionCookie(w) != nil {
		t.Fatalf("login racing an account change: status %d, cookie %v", w.Code, sessionCookie(w))
	}
	if n := a.liveSessions("alice"); n != 0 {
		t.Fatalf("%d live sessions, want 0", n)
	}
	// A fresh pin works.
	pin, _ = a.m.Pin(ctx, "alice")
	w = a.park("", func(ctx context.Context, s *cloakroom.Session) error {
		return s.Login(ctx, "alice", cloakroom.LoginOptions{Pin: pin})
	})()
	if w.Code != 200 || sessionCookie(w) == nil {
		t.Fatalf("login with a fresh pin: %d", w.Code)
	}
	// A pin is for one user.
	a.park("", func(ctx context.Context, s *cloakroom.Session) error {
		err := s.Login(ctx, "mallory", cloakroom.LoginOptions{Pin: pin})
		if !errors.Is(err, cloakroom.ErrInvalidInput) {
			t.Errorf("login as mallory with alice's pin: %v, want ErrInvalidInput", err)
		}
		return nil
	})()
}

// A login with initial values is one store write.
func TestLoginWithValuesIsOneWrite(t *testing.T) {
	a := newApp(t, nil)
	w := a.park("", func(ctx context.Context, s *cloakroom.Session) error {
		before := a.store.commits.Load() + a.store.rotates.Load() + a.store.deletes.Load()
		err := s.Login(ctx, "alice", cloakroom.LoginOptions{Values: map[string]string{"roles": "admin", "name": "Alice"}})
		if after := a.store.commits.Load() + a.store.rotates.Load() + a.store.deletes.Load(); after-before != 1 {
			t.Errorf("login made %d store writes, want 1", after-before)
		}
		return err
	})()
	c := sessionCookie(w)
	if w.Code != 200 || c == nil {
		t.Fatalf("login: %d", w.Code)
	}
	if got := a.do("GET", "/get?k=roles", c.Value).Body.String(); got != "admin" {
		t.Fatalf("value after login = %q, want admin", got)
	}
}

// Polling a status endpoint that marks itself passive never moves the
// idle deadline.
func TestPassiveRequestsDoNotExtendTheSession(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	poll := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.m.Session(r)
		s.MarkPassive()
		if s.LoggedIn() {
			w.Write([]byte("live"))
		}
	}))
	get := func() string {
		r := httptest.NewRequest("GET", "/status", nil)
		r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
		w := httptest.NewRecorder()
		poll.ServeHTTP(w, r)
		return w.Body.String()
	}
	a.clock.Advance(25 * time.Minute)
	if get() != "live" {
		t.Fatal("session died before its idle timeout")
	}
	a.clock.Advance(6 * time.Minute) // 31 minutes after the last real use
	if got := get(); got != "" {
		t.Fatal("polling kept an idle session alive")
	}
}

// watchManager is a manager whose Watch can be observed, on a memstore shared
// with other managers (other nodes).
func watchManager(t *testing.T, store cloakroom.Store, clock *storetest.Clock) *cloakroom.Manager {
	t.Helper()
	m, err := cloakroom.New(cloakroom.Config{Store: store, Now: clock.Now, RecheckInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// watchFor loads token's session in m and returns a Watch context for it.
// Each of before runs after the load and before the Watch.
func watchFor(t *testing.T, m *cloakroom.Manager, token string, before ...func()) context.Context {
	t.Helper()
	var ctx context.Context
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, f := range before {
			f()
		}
		var stop context.CancelFunc
		ctx, stop = m.Session(r).Watch(context.Background())
		t.Cleanup(stop)
	}))
	r := httptest.NewRequest("GET", "/stream", nil)
	r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
	h.ServeHTTP(httptest.NewRecorder(), r)
	return ctx
}

func loginThrough(t *testing.T, m *cloakroom.Manager, user string) string {
	t.Helper()
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.Session(r).Login(r.Context(), user, cloakroom.LoginOptions{}); err != nil {
			t.Fatal(err)
		}
	}))
	r := httptest.NewRequest("POST", "/login", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	c := sessionCookie(w)
	if c == nil {
		t.Fatal("no cookie")
	}
	return c.Value
}

func waitEnded(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("watch still open after %s", what)
	}
}

// onlyStore hides the optional interfaces of a store (end notifications,
// Pinger): a third-party store that implements only the Store contract.
type onlyStore struct{ cloakroom.Store }

// Open connections held by Watch end with their session, on every node.
func TestWatchEndsWithTheSession(t *testing.T) {
	ended := func(ctx context.Context) bool { return ctx.Err() != nil }
	t.Run("logout on another node", func(t *testing.T) {
		clock := storetest.NewClock(storetest.Start)
		store := memstore.New(memstore.Config{Now: clock.Now})
		defer store.Close()
		a, b := watchManager(t, store, clock), watchManager(t, store, clock)
		token := loginThrough(t, a, "alice")
		other := loginThrough(t, a, "alice")
		ctx, keep := watchFor(t, a, token), watchFor(t, a, other)
		h := b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.Session(r).Logout(r.Context())
		}))
		r := httptest.NewRequest("POST", "/logout", nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
		h.ServeHTTP(httptest.NewRecorder(), r)
		waitEnded(t, ctx, "logout on another node")
		if ended(keep) {
			t.Fatal("another session's watch ended too")
		}
	})
	t.Run("account revoked on another node", func(t *testing.T) {
		clock := storetest.NewClock(storetest.Start)
		store := memstore.New(memstore.Config{Now: clock.Now})
		defer store.Close()
		a, b := watchManager(t, store, clock), watchManager(t, store, clock)
		ctx := watchFor(t, a, loginThrough(t, a, "alice"))
		bob := watchFor(t, a, loginThrough(t, a, "bob"))
		if err := b.RevokeUser(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		waitEnded(t, ctx, "RevokeUser on another node")
		if ended(bob) {
			t.Fatal("another user's watch ended")
		}
	})
	t.Run("expiry", func(t *testing.T) {
		clock := storetest.NewClock(storetest.Start)
		store := memstore.New(memstore.Config{Now: clock.Now})
		defer store.Close()
		m := watchManager(t, store, clock)
		ctx := watchFor(t, m, loginThrough(t, m, "alice"))
		clock.Advance(cloakroom.DefaultIdleTimeout + time.Second)
		waitEnded(t, ctx, "idle expiry")
	})
	t.Run("store that cannot notify", func(t *testing.T) {
		clock := storetest.NewClock(storetest.Start)
		ms := memstore.New(memstore.Config{Now: clock.Now})
		defer ms.Close()
		m := watchManager(t, onlyStore{ms}, clock)
		token := loginThrough(t, m, "alice")
		ctx := watchFor(t, m, token)
		// Revoked behind the manager's back, as another process would.
		if _, err := ms.BumpGeneration(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		waitEnded(t, ctx, "a revocation seen only by the re-check")
	})
	t.Run("ended between load and watch", func(t *testing.T) {
		clock := storetest.NewClock(storetest.Start)
		ms := memstore.New(memstore.Config{Now: clock.Now})
		defer ms.Close()
		// A long re-check interval: only the check at registration can
		// see an end that no notification will report again.
		m, err := cloakroom.New(cloakroom.Config{Store: onlyStore{ms}, Now: clock.Now, RecheckInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		token := loginThrough(t, m, "alice")
		ctx := watchFor(t, m, token, func() {
			// Logged out elsewhere while this request waited for its upstream.
			if _, err := ms.BumpGeneration(context.Background(), "alice"); err != nil {
				t.Fatal(err)
			}
		})
		waitEnded(t, ctx, "an end that happened before the watch began")
	})
	t.Run("no session", func(t *testing.T) {
		clock := storetest.NewClock(storetest.Start)
		ms := memstore.New(memstore.Config{Now: clock.Now})
		defer ms.Close()
		m := watchManager(t, ms, clock)
		if ctx := watchFor(t, m, "not-a-token"); !ended(ctx) {
			t.Fatal("watch without a session is open")
		}
	})
}

// Revoking a device by handle ends it even when a renewal of it (same
// handle, new key) lands between the lookup and the delete.
func TestRevokeDeviceOutlivesARacingRenewal(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	ms := memstore.New(memstore.Config{Now: clock.Now})
	defer ms.Close()
	store := &renewingStore{Store: ms, t: t, user: "alice"}
	m := watchManager(t, store, clock)
	loginThrough(t, m, "alice")
	recs, err := ms.List(ctx, "alice")
	if err != nil || len(recs) != 1 {
		t.Fatalf("List: %d sessions, %v", len(recs), err)
	}
	store.mu.Lock()
	store.handle, store.renewals = recs[0].Handle, 1
	store.mu.Unlock()
	if err := m.RevokeDevice(ctx, "alice", recs[0].Handle); err != nil {
		t.Fatal(err)
	}
	if recs, err := ms.List(ctx, "alice"); err != nil || len(recs) != 0 {
		t.Fatalf("after RevokeDevice: %d live sessions (%v), want 0", len(recs), err)
	}
}

// gatedStore holds WatchEnds back until open is closed, as a store whose
// subscription goes live late (a pub/sub connection being set up), and
// signals every Find on finds.
type gatedStore struct {
	*memstore.Store
	open  chan struct{}
	finds chan struct{}
}

func (s *gatedStore) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	rec, found, err := s.Store.Find(ctx, key)
	select {
	case s.finds <- struct{}{}:
	default:
	}
	return rec, found, err
}

func (s *gatedStore) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	select {
	case <-s.open:
	case <-ctx.Done():
		return nil
	}
	return s.Store.WatchEnds(ctx, fn)
}

// A node's first Watch ends with a session ended after the watch had
// registered and checked it but before the store's notifications were
// live, which nobody could report: the store says End{All: true} once they
// are, and the watches are re-checked then, not at the next periodic
// re-check (an hour here).
func TestFirstWatchSeesAnEndBeforeNotificationsAreLive(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	ms := memstore.New(memstore.Config{Now: clock.Now})
	defer ms.Close()
	store := &gatedStore{Store: ms, open: make(chan struct{}), finds: make(chan struct{}, 16)}
	m, err := cloakroom.New(cloakroom.Config{Store: store, Now: clock.Now, RecheckInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	token := loginThrough(t, m, "alice")
	ctx := watchFor(t, m, token)
	<-store.finds // the request's load
	<-store.finds // the watch's check once registered
	if ctx.Err() != nil {
		t.Fatal("the watch ended before its session")
	}
	key, _ := cloakroom.ParseToken(token)
	if err := ms.Delete(context.Background(), key); err != nil { // heard by nobody yet
		t.Fatal(err)
	}
	close(store.open)
	waitEnded(t, ctx, "a logout made before the store's notifications were live")
}
