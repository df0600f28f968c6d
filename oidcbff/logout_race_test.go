package oidcbff_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/oidcbff"
)

// parkingStore is a memstore that parks one login at a chosen point of
// the callback: at its first creation of an auxiliary record (the token
// record, written before the session exists) when beforeLogin, or at its
// first such creation after the session's Rotate (the back-channel logout
// index) otherwise.
type parkingStore struct {
	*memstore.Store
	armed       atomic.Bool
	beforeLogin bool
	rotated     atomic.Bool
	parked      chan struct{}
	release     chan struct{}
}

func newParkingStore(now func() time.Time, beforeLogin bool) *parkingStore {
	return &parkingStore{
		Store:       memstore.New(memstore.Config{Now: now}),
		beforeLogin: beforeLogin,
		parked:      make(chan struct{}),
		release:     make(chan struct{}),
	}
}

func (s *parkingStore) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	rec, err := s.Store.Rotate(ctx, r)
	if err == nil && r.New.UserID != "" && s.armed.Load() {
		s.rotated.Store(true)
	}
	return rec, err
}

func (s *parkingStore) CommitAux(ctx context.Context, rec cloakroom.AuxRecord) error {
	if rec.Version == 1 && s.armed.Load() && (s.beforeLogin || s.rotated.Load()) && s.armed.CompareAndSwap(true, false) {
		s.parked <- struct{}{}
		<-s.release
	}
	return s.Store.CommitAux(ctx, rec)
}

// parkedLogin starts a login in the background, waits until the store
// parks it, runs during, lets the login finish and returns its callback
// response.
func parkedLogin(t *testing.T, e *env, ps *parkingStore, b *browser, during func()) response {
	t.Helper()
	ps.armed.Store(true)
	done := make(chan response, 1)
	go func() {
		// Not b.login: t.Fatal must not run outside the test goroutine.
		auth := b.get("/auth/login/" + e.p.name).Header.Get("Location")
		cb := b.get(auth).Header.Get("Location")
		done <- b.get(cb)
	}()
	select {
	case <-ps.parked:
	case r := <-done:
		t.Fatalf("the login finished without reaching the parking point: %d %s", r.Status, r.Text)
	}
	during()
	close(ps.release)
	return <-done
}

func parkingEnv(t *testing.T, beforeLogin bool, opts ...envOption) (*env, *parkingStore) {
	var ps *parkingStore
	mock := providerCases(t)[0]
	e := newEnvOn(t, 2, func(urls []string) *provider { return mock.start(t, urls) }, func(now func() time.Time) cloakroom.Store {
		if ps == nil {
			ps = newParkingStore(now, beforeLogin)
			t.Cleanup(func() { ps.Store.Close() })
		}
		return ps
	}, nil, opts...)
	mock.setSID("sid-race")
	return e, ps
}

// TestBackchannelLogoutDuringLogin: a logout token for the provider
// session that arrives while the callback is between starting the session
// and indexing it under its sid must still end it.
func TestBackchannelLogoutDuringLogin(t *testing.T) {
	e, ps := parkingEnv(t, false)
	b := e.browser(e.nodes[0])
	r := parkedLogin(t, e, ps, b, func() {
		tok := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "alice-sub", "sid-race"))
		if s := e.logoutToken(tok); s != http.StatusOK {
			t.Errorf("logout by sid: %d", s)
		}
	})
	if e.alive(b) {
		t.Fatalf("the session survived a back-channel logout of its sid that came during the login (callback %d)", r.Status)
	}
	if r.Status == http.StatusSeeOther {
		t.Errorf("the callback reported a successful login: %d", r.Status)
	}
}

// TestBackchannelLogoutBySubDuringLogin: a logout token naming only the
// sub, arriving after the ID token was verified but before the session
// exists, must not let that login start a session: the generation bump it
// causes comes before the login reads the generation.
func TestBackchannelLogoutBySubDuringLogin(t *testing.T) {
	for _, userClaim := range []string{"sub", "email"} {
		t.Run(userClaim, func(t *testing.T) {
			e, ps := parkingEnv(t, true, func(c *oidcbff.Config) { c.Providers[0].UserClaim = userClaim })
			b := e.browser(e.nodes[0])
			parkedLogin(t, e, ps, b, func() {
				// The provider ends the user's sessions after it issued the
				// ID token the parked login holds.
				e.clock.Advance(30 * time.Second)
				tok := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "alice-sub", ""))
				if s := e.logoutToken(tok); s != http.StatusOK {
					t.Errorf("logout by sub: %d", s)
				}
			})
			if e.alive(b) {
				t.Fatal("the session survived a back-channel logout of its sub that came during the login")
			}
			// A login after the logout (a new authentication at the
			// provider, its ID token issued later) works.
			e.clock.Advance(time.Minute)
			e.p.mock.fastForward(2 * time.Minute)
			b2 := e.browser(e.nodes[0])
			b2.mustLogin()
			if !e.alive(b2) {
				t.Fatal("a login after the logout does not work")
			}
		})
	}
}

// TestLoginOutlivingItsStateIsRefused: a login that finishes later than
// its pre-login state may live is refused, so that tombstones of
// back-channel logouts need to outlive only that long.
func TestLoginOutlivingItsStateIsRefused(t *testing.T) {
	e, ps := parkingEnv(t, false)
	b := e.browser(e.nodes[0])
	r := parkedLogin(t, e, ps, b, func() { e.clock.Advance(oidcbff.DefaultStateTTL + 2*oidcbff.DefaultClockSkew) })
	if r.Status != http.StatusUnauthorized || e.alive(b) {
		t.Fatalf("a login that outlived its state: callback %d, session alive %v", r.Status, e.alive(b))
	}
}

// TestBackchannelLogoutBySubBeforeTheCodeExchange: a provider whose ID
// tokens carry neither auth_time nor sid ends every session of the sub
// after it handed out the login's code but before the gateway redeemed
// it. The ID token issued at the redemption is younger than the logout,
// yet the login was in flight when the logout came: it must not start a
// session.
func TestBackchannelLogoutBySubBeforeTheCodeExchange(t *testing.T) {
	for _, userClaim := range []string{"sub", "email"} {
		t.Run(userClaim, func(t *testing.T) {
			e := newEnv(t, 1, func(urls []string) *provider { return providerCases(t)[0].start(t, urls) },
				func(c *oidcbff.Config) { c.Providers[0].UserClaim = userClaim })
			b := e.browser(e.nodes[0])
			callback := e.p.login(t, b, b.startLogin("")) // the code is issued
			e.clock.Advance(10 * time.Second)
			tok := e.p.signLogout(t, "logout+jwt", e.p.logoutClaims(e.clock.Now(), "alice-sub", ""))
			if s := e.logoutToken(tok); s != http.StatusOK {
				t.Fatalf("logout by sub: %d", s)
			}
			// The provider redeems the code later by its clock.
			e.p.mock.fastForward(time.Minute)
			e.clock.Advance(10 * time.Second)
			r := b.get(callback)
			if e.alive(b) {
				t.Fatalf("the session survived a logout of its sub that came before the code exchange (callback %d)", r.Status)
			}
			// A login started after the logout works.
			e.clock.Advance(time.Second)
			b2 := e.browser(e.nodes[0])
			b2.mustLogin()
		})
	}
}
