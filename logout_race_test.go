package cloakroom_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

// logLine returns the first line of logs with msg, or "".
func logLine(logs *syncbuf.Buffer, msg string) string {
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "msg="+msg+" ") {
			return l
		}
	}
	return ""
}

func ref(t *testing.T, token string) string {
	t.Helper()
	key, ok := cloakroom.ParseToken(token)
	if !ok {
		t.Fatalf("malformed token %q", token)
	}
	return key.Short()
}

// A logout ends its session even when another request of the same session
// rotated its token (same handle, new key) while the logout was parked
// after loading it: the renewed session and its streams end too, and the
// audit line names the session the logout presented.
func TestLogoutOutlivesARacingRotation(t *testing.T) {
	rotations := map[string]string{"Renew": "/renew", "RevokeOthers": "/revoke-others"}
	for name, path := range rotations {
		t.Run(name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			a := newApp(t, func(c *cloakroom.Config) {
				c.Logger = slog.New(slog.NewTextHandler(logs, nil))
				// No backstop re-check: only the logout itself can end the
				// renewed session's stream.
				c.RecheckInterval = time.Hour
			})
			t.Cleanup(func() { a.m.Close() })
			token := a.login("alice")
			other := a.login("alice") // another device
			var logoutRef string
			release := a.park(token, func(ctx context.Context, s *cloakroom.Session) error {
				err := s.Logout(ctx)
				logoutRef = s.Ref()
				return err
			})
			// The same session rotates, in a request that completes
			// while the logout waits.
			w := a.do("POST", path, token)
			renewed := sessionCookie(w)
			if w.Code != 200 || renewed == nil || renewed.Value == "" {
				t.Fatalf("%s: status %d, cookie %v", path, w.Code, renewed)
			}
			stream := watchFor(t, a.m, renewed.Value)
			if stream.Err() != nil {
				t.Fatal("the renewed session's watch ended before the logout")
			}

			lw := release()
			if c := sessionCookie(lw); lw.Code != 200 || c == nil || c.MaxAge >= 0 {
				t.Fatalf("logout: status %d, cookie %q", lw.Code, lw.Header().Get("Set-Cookie"))
			}
			if got := a.whoami(renewed.Value); got != "user=" {
				t.Fatalf("renewed token after the logout: %q, want no user", got)
			}
			// Logout ends the watches of what it deleted before it returns.
			if stream.Err() == nil {
				t.Fatal("the renewed session's watch outlived the logout")
			}
			wantOthers := 1 // the other device, untouched by a logout
			if name == "RevokeOthers" {
				wantOthers = 0 // revoked by the rotation itself
			}
			if n := a.liveSessions("alice"); n != wantOthers {
				t.Fatalf("%d live sessions after the logout, want %d", n, wantOthers)
			}
			if name == "Renew" {
				if got := a.whoami(other); got != "user=alice" {
					t.Fatalf("other device after the logout: %q", got)
				}
			}

			if logoutRef != ref(t, token) {
				t.Errorf("Ref after logout = %q, want the presented session's %q", logoutRef, ref(t, token))
			}
			line := logLine(logs, "logout")
			if !strings.Contains(line, "session="+ref(t, token)) || !strings.Contains(line, ref(t, renewed.Value)) {
				t.Errorf("logout audit line %q: want session=%s and the renewed %s", line, ref(t, token), ref(t, renewed.Value))
			}
		})
	}
}

// renewingStore renews the session with handle under a new key (a
// rotation that keeps the handle) just before each of its first renewals
// Deletes: renewals landing between a look-up and a delete.
type renewingStore struct {
	cloakroom.Store
	t        *testing.T
	user     string
	handle   string
	mu       sync.Mutex
	renewals int
}

func (s *renewingStore) Delete(ctx context.Context, key cloakroom.Key) error {
	s.mu.Lock()
	renew := s.renewals > 0 && s.handle != ""
	if renew {
		s.renewals--
	}
	s.mu.Unlock()
	if renew {
		s.renew(ctx)
	}
	return s.Store.Delete(ctx, key)
}

func (s *renewingStore) renew(ctx context.Context) {
	recs, err := s.Store.List(ctx, s.user)
	if err != nil {
		s.t.Errorf("List before the renewal: %v", err)
		return
	}
	for _, rec := range recs {
		if rec.Handle != s.handle {
			continue
		}
		next := rec
		next.Key, next.Version = storetest.NewRecord("", rec.CreatedAt).Key, 1
		if _, err := s.Store.Rotate(ctx, cloakroom.Rotation{Old: rec.Key, OldMustLive: true, New: next}); err != nil {
			s.t.Errorf("renewal: %v", err)
		}
		return
	}
	s.t.Errorf("no session %q to renew", s.handle)
}

// logoutThrough logs token's session out in m and returns Logout's error.
func logoutThrough(t *testing.T, m *cloakroom.Manager, token string) error {
	t.Helper()
	var err error
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err = m.Session(r).Logout(r.Context())
	}))
	r := httptest.NewRequest("POST", "/logout", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
	h.ServeHTTP(httptest.NewRecorder(), r)
	return err
}

// A logout keeps looking while renewals keep landing between its look-up
// and its delete, and gives up with an error, not a false success, when
// they never stop.
func TestLogoutLooksAgainAfterEachDelete(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		renewals int
		wantErr  bool
	}{{renewals: 1}, {renewals: 3}, {renewals: 1000, wantErr: true}} {
		clock := storetest.NewClock(storetest.Start)
		ms := memstore.New(memstore.Config{Now: clock.Now})
		defer ms.Close()
		store := &renewingStore{Store: ms, t: t, user: "alice"}
		m := watchManager(t, store, clock)
		token := loginThrough(t, m, "alice")
		recs, err := ms.List(ctx, "alice")
		if err != nil || len(recs) != 1 {
			t.Fatalf("List: %d sessions, %v", len(recs), err)
		}
		store.mu.Lock()
		store.handle, store.renewals = recs[0].Handle, tc.renewals
		store.mu.Unlock()
		err = logoutThrough(t, m, token)
		if tc.wantErr {
			if !errors.Is(err, cloakroom.ErrStoreUnavailable) {
				t.Fatalf("logout against endless renewals: %v, want ErrStoreUnavailable", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("logout with %d racing renewals: %v", tc.renewals, err)
		}
		if recs, err := ms.List(ctx, "alice"); err != nil || len(recs) != 0 {
			t.Fatalf("after logout with %d racing renewals: %d live sessions (%v), want 0", tc.renewals, len(recs), err)
		}
	}
}

// elevatedLogin logs alice in to a new app, her session holding
// elevated=yes, a privilege.
func elevatedLogin(t *testing.T) (*app, string) {
	t.Helper()
	a := newApp(t, nil)
	token := a.login("alice")
	if w := a.do("POST", "/put?k=elevated&v=yes", token); w.Code != 200 {
		t.Fatalf("put: %d", w.Code)
	}
	return a, token
}

// dropPrivilege is a request's change to its session: it removes the
// privilege and leaves a mark.
func dropPrivilege(ctx context.Context, s *cloakroom.Session) error {
	s.Remove("elevated")
	s.Put("seen", "1")
	return nil
}

// wantDropped checks that token's session is alice's with dropPrivilege's
// change.
func (a *app) wantDropped(token string) {
	a.t.Helper()
	if got := a.do("GET", "/get?k=elevated", token).Body.String(); got != "" {
		a.t.Errorf("session still has elevated=%q after its removal", got)
	}
	if got := a.do("GET", "/get?k=seen", token).Body.String(); got != "1" {
		a.t.Errorf("session: seen=%q, want the privilege-dropping request's 1", got)
	}
	if got := a.whoami(token); got != "user=alice" {
		a.t.Errorf("session after the change: %q", got)
	}
}

// parkAcrossRotation parks a request of token's session doing op, rotates
// the session with a request to path, then lets the parked one go on. The
// parked response must leave the browser's cookie alone: the rotating one
// has sent the renewed cookie, whose value it returns.
func (a *app) parkAcrossRotation(token, path string, op func(context.Context, *cloakroom.Session) error) string {
	a.t.Helper()
	release := a.park(token, op)
	w := a.do("POST", path, token)
	renewed := sessionCookie(w)
	if w.Code != 200 || renewed == nil || renewed.Value == "" {
		a.t.Fatalf("%s: status %d, cookie %v", path, w.Code, renewed)
	}
	pw := release()
	if pw.Code != 200 {
		a.t.Fatalf("parked request: status %d", pw.Code)
	}
	if c := sessionCookie(pw); c != nil {
		a.t.Errorf("parked request set cookie %q, want none", pw.Header().Get("Set-Cookie"))
	}
	return renewed.Value
}

// putSeen is a parked request's change: seen=v.
func putSeen(v string) func(context.Context, *cloakroom.Session) error {
	return func(_ context.Context, s *cloakroom.Session) error {
		s.Put("seen", v)
		return nil
	}
}

// A value change saved by a request parked while another request of the
// same session rotated it (same handle, new key) lands on the renewed
// session instead of being dropped while the session lives on: a removal
// that takes a privilege away is not undone by a renewal. A session that
// really ended meanwhile still drops the change.
func TestValueChangeOutlivesARacingRotation(t *testing.T) {
	rotations := map[string]string{"Renew": "/renew", "RevokeOthers": "/revoke-others"}
	for name, path := range rotations {
		t.Run(name, func(t *testing.T) {
			a, token := elevatedLogin(t)
			a.wantDropped(a.parkAcrossRotation(token, path, dropPrivilege))
		})
	}
	// A login over the session starts another one, with a new handle:
	// the parked change of alice's session never reaches bob's.
	t.Run("login as another user", func(t *testing.T) {
		a := newApp(t, nil)
		token := a.login("alice")
		release := a.park(token, putSeen("alice"))
		bob := sessionCookie(a.do("POST", "/login?user=bob", token))
		if bob == nil {
			t.Fatal("login over the session sent no cookie")
		}
		release()
		if got := a.do("GET", "/get?k=seen", bob.Value).Body.String(); got != "" {
			t.Errorf("bob's session holds alice's change seen=%q", got)
		}
	})
	t.Run("logout", func(t *testing.T) {
		a := newApp(t, nil)
		token := a.login("alice")
		release := a.park(token, putSeen("1"))
		if w := a.do("POST", "/logout", token); w.Code != 200 {
			t.Fatalf("logout: %d", w.Code)
		}
		pw := release()
		if c := sessionCookie(pw); c == nil || c.MaxAge >= 0 {
			t.Errorf("change to a logged-out session: cookie %q, want it expired", pw.Header().Get("Set-Cookie"))
		}
		if n := a.liveSessions("alice"); n != 0 {
			t.Fatalf("%d live sessions after the logout, want 0", n)
		}
	})
}

// A request that presented the token from before a renewal (a step-up's
// Renew, say) and saves a change after it lands the change on the renewed
// session, but does not take that session up: for the rest of the request
// it neither reads what came with the renewal (the stepped-up privilege)
// nor holds a Watch stream open on it, as streams under the old token end
// at a rotation. Before, the request went on as the renewed session.
func TestChangeAcrossARotationKeepsTheOldView(t *testing.T) {
	a := newApp(t, nil)
	t.Cleanup(func() { a.m.Close() })
	token := a.login("alice")
	loaded, proceed := make(chan struct{}), make(chan struct{})
	var elevated string
	var watch context.Context
	done := make(chan struct{})
	h := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(loaded)
		<-proceed
		s := a.m.Session(r)
		s.Put("seen", "1")
		w.(http.Flusher).Flush() // the response starts: the change is saved
		elevated = s.GetString("elevated")
		var stop context.CancelFunc
		watch, stop = s.Watch(context.Background())
		t.Cleanup(stop)
	}))
	go func() {
		defer close(done)
		r := httptest.NewRequest("POST", "/stream", nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	<-loaded
	stepUp := a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.m.Session(r)
		s.Put("elevated", "yes")
		if err := s.Renew(r.Context()); err != nil {
			t.Errorf("step-up renewal: %v", err)
		}
	}))
	r := httptest.NewRequest("POST", "/step-up", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
	w := httptest.NewRecorder()
	stepUp.ServeHTTP(w, r)
	renewed := sessionCookie(w)
	if renewed == nil {
		t.Fatal("step-up sent no cookie")
	}
	close(proceed)
	<-done
	if got := a.do("GET", "/get?k=seen", renewed.Value).Body.String(); got != "1" {
		t.Errorf("renewed session: seen=%q, want the parked request's 1", got)
	}
	if elevated != "" {
		t.Errorf("the old token's request read elevated=%q, granted with the renewal", elevated)
	}
	waitEnded(t, watch, "the old token's request watched after the renewal")
}

// A request that only records activity (a touch, due after
// TouchInterval), parked while another request of the same session
// rotated it, leaves the browser's renewed cookie alone: the session lives
// on under its new key. Before, the touch met the deleted old key and the
// response expired the cookie the rotation had just set. A session that
// really ended meanwhile still has its cookie expired.
func TestTouchOutlivesARacingRotation(t *testing.T) {
	rotations := map[string]string{"Renew": "/renew", "RevokeOthers": "/revoke-others"}
	for name, path := range rotations {
		t.Run(name, func(t *testing.T) {
			a := newApp(t, nil)
			token := a.login("alice")
			a.clock.Advance(2 * cloakroom.DefaultTouchInterval) // the next request touches
			renewed := a.parkAcrossRotation(token, path, func(context.Context, *cloakroom.Session) error { return nil })
			if got := a.whoami(renewed); got != "user=alice" {
				t.Errorf("renewed session after the parked touch: %q", got)
			}
		})
	}
	t.Run("logout", func(t *testing.T) {
		a := newApp(t, nil)
		token := a.login("alice")
		a.clock.Advance(2 * cloakroom.DefaultTouchInterval)
		release := a.park(token, func(context.Context, *cloakroom.Session) error { return nil })
		if w := a.do("POST", "/logout", token); w.Code != 200 {
			t.Fatalf("logout: %d", w.Code)
		}
		pw := release()
		if c := sessionCookie(pw); c == nil || c.MaxAge >= 0 {
			t.Errorf("touch of a logged-out session: cookie %q, want it expired", pw.Header().Get("Set-Cookie"))
		}
	})
}

// A rotation that keeps the session (Renew, RevokeOthers) deletes its old
// key, so Watch streams opened under the old token end, on this node at
// once and on other nodes too; the client re-opens them with the new
// cookie, whose watch stays open.
func TestRotationEndsTheOldTokensWatches(t *testing.T) {
	for _, name := range []string{"Renew", "RevokeOthers"} {
		t.Run(name, func(t *testing.T) {
			clock := storetest.NewClock(storetest.Start)
			ms := memstore.New(memstore.Config{Now: clock.Now})
			defer ms.Close()
			// The other node hears of the end from the store's
			// notification, or from its re-check if its first watch
			// subscribed only after the rotation.
			newNode := func() *cloakroom.Manager {
				m, err := cloakroom.New(cloakroom.Config{Store: ms, Now: clock.Now, RecheckInterval: 20 * time.Millisecond,
					Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Close() })
				return m
			}
			a, b := newNode(), newNode()
			token := loginThrough(t, a, "alice")
			here, there := watchFor(t, a, token), watchFor(t, b, token)
			var renewed string
			h := a.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := a.Session(r)
				var err error
				if name == "Renew" {
					err = s.Renew(r.Context())
				} else {
					err = s.RevokeOthers(r.Context())
				}
				if err != nil {
					t.Error(err)
				}
			}))
			r := httptest.NewRequest("POST", "/rotate", nil)
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			r.Header.Set("Cookie", cloakroom.DefaultCookieName+"="+token)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if c := sessionCookie(w); c != nil {
				renewed = c.Value
			}
			if renewed == "" || renewed == token {
				t.Fatalf("%s issued no new token", name)
			}
			if here.Err() == nil {
				t.Error("the old token's watch on the rotating node outlived the rotation")
			}
			waitEnded(t, there, name+" on another node")
			if again := watchFor(t, b, renewed); again.Err() != nil {
				t.Error("a watch under the new token ended at once")
			}
		})
	}
}

// A value change committed by another request of the session after a
// rotation that keeps the session (Renew, RevokeOthers) loaded it, and
// before it rotated, is in the renewed session: the rotation does not
// build the new key from its stale copy, which would bring a removed
// privilege back with the new token. The rotating request's own unsaved
// changes go on top.
func TestRotationKeepsAChangeCommittedMeanwhile(t *testing.T) {
	rotations := map[string]func(*cloakroom.Session, context.Context) error{
		"Renew":        (*cloakroom.Session).Renew,
		"RevokeOthers": (*cloakroom.Session).RevokeOthers,
	}
	for name, rotate := range rotations {
		t.Run(name, func(t *testing.T) {
			a, token := elevatedLogin(t)
			release := a.park(token, func(ctx context.Context, s *cloakroom.Session) error {
				s.Put("mine", "1")
				return rotate(s, ctx)
			})
			// Another request of the session drops the privilege and
			// completes while the rotation waits.
			if w := a.park(token, dropPrivilege)(); w.Code != 200 {
				t.Fatalf("dropping the privilege: status %d", w.Code)
			}
			w := release()
			renewed := sessionCookie(w)
			if w.Code != 200 || renewed == nil || renewed.Value == "" {
				t.Fatalf("%s: status %d (%s), cookie %v", name, w.Code, w.Body, renewed)
			}
			a.wantDropped(renewed.Value)
			if got := a.do("GET", "/get?k=mine", renewed.Value).Body.String(); got != "1" {
				t.Errorf("renewed session: mine=%q, want the rotating request's 1", got)
			}
			if got := a.whoami(token); got != "user=" {
				t.Errorf("old token after the rotation: %q, want no user", got)
			}
		})
	}
}

// movingStore commits a change to the old session right before each of
// its first moves rotations of it: requests of the session saving values
// just as it is renewed.
type movingStore struct {
	cloakroom.Store
	mu    sync.Mutex
	moves int
}

func (s *movingStore) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	s.mu.Lock()
	move := s.moves > 0 && r.OldMustLive
	if move {
		s.moves--
	}
	s.mu.Unlock()
	if move {
		rec, found, err := s.Store.Find(ctx, r.Old)
		if err != nil || !found {
			return cloakroom.Record{}, fmt.Errorf("moving the session: found %v, %v", found, err)
		}
		rec.Version++
		if err := s.Store.Commit(ctx, rec); err != nil {
			return cloakroom.Record{}, fmt.Errorf("moving the session: %w", err)
		}
	}
	return s.Store.Rotate(ctx, r)
}

// A renewal reloads the session and rotates again while commits keep
// landing before its rotation, and gives up with an error, creating
// nothing, when they never stop.
func TestRenewRetriesAfterConflicts(t *testing.T) {
	for _, tc := range []struct {
		moves   int
		wantErr bool
	}{{moves: 1}, {moves: 3}, {moves: 1000, wantErr: true}} {
		store := &movingStore{}
		a := newApp(t, func(c *cloakroom.Config) {
			store.Store = c.Store
			c.Store = store
		})
		token := a.login("alice")
		store.mu.Lock()
		store.moves = tc.moves
		store.mu.Unlock()
		var err error
		w := a.park(token, func(ctx context.Context, s *cloakroom.Session) error {
			err = s.Renew(ctx)
			return err
		})()
		renewed := sessionCookie(w)
		switch {
		case tc.wantErr && (!errors.Is(err, cloakroom.ErrStoreUnavailable) || !errors.Is(err, cloakroom.ErrConflict)):
			t.Fatalf("renewal against endless commits: %v, want ErrStoreUnavailable and ErrConflict", err)
		case tc.wantErr && (renewed != nil || a.whoami(token) != "user=alice"):
			t.Fatalf("a failed renewal replaced the session (cookie %v)", renewed)
		case !tc.wantErr && (err != nil || renewed == nil):
			t.Fatalf("renewal with %d commits landing before it: %v, cookie %v", tc.moves, err, renewed)
		case !tc.wantErr && (a.whoami(renewed.Value) != "user=alice" || a.whoami(token) != "user="):
			t.Fatalf("renewal with %d commits landing before it: the new token is not alice's or the old one lives", tc.moves)
		}
		if n := a.liveSessions("alice"); n != 1 {
			t.Fatalf("%d moves: %d live sessions, want 1", tc.moves, n)
		}
	}
}
