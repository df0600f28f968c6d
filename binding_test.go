package cloakroom_test

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cloakroom/cloakroom"
)

var errNoDeviceProof = errors.New("no device proof")

// A session whose Binding hook refuses a request is not logged in for that
// request, but lives on: nothing is written, its cookie stays, and the
// next request with the proof is logged in again. RequireLogin says why.
func TestBindingRefusesWithoutEndingTheSession(t *testing.T) {
	var asked atomic.Int64
	a := newApp(t, func(c *cloakroom.Config) {
		c.Binding = func(r *http.Request, s *cloakroom.Session) error {
			asked.Add(1)
			if r.Header.Get("X-Device") != "ok" {
				return errNoDeviceProof
			}
			return nil
		}
	})
	a.handler = a.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.m.Session(r)
		if r.URL.Path == "/guarded" {
			a.m.RequireLogin(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
			return
		}
		if !errors.Is(s.BindingErr(), errNoDeviceProof) && s.BindingErr() != nil {
			t.Errorf("BindingErr = %v", s.BindingErr())
		}
		w.Header().Set("X-User", s.UserID())
		w.Header().Set("X-Refused", boolString(s.BindingErr() != nil))
	}))
	token := loginThroughApp(t, a, "alice")
	if n := asked.Load(); n != 0 {
		t.Fatalf("the hook was asked %d times about a sign-in without a session", n)
	}
	a.clock.Advance(2 * cloakroom.DefaultTouchInterval) // a touch is due
	commits := a.store.commits.Load()
	w := a.do(http.MethodGet, "/", token)
	if w.Header().Get("X-User") != "" || w.Header().Get("X-Refused") != "true" {
		t.Fatalf("refused request: user %q refused %q", w.Header().Get("X-User"), w.Header().Get("X-Refused"))
	}
	if len(w.Result().Cookies()) != 0 || w.Header().Get("Clear-Site-Data") != "" {
		t.Fatalf("a refused request touched the cookie: %v", w.Header())
	}
	if a.store.commits.Load() != commits {
		t.Fatal("a refused request wrote to the store")
	}
	w = a.do(http.MethodGet, "/guarded", token)
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "bound to a device") {
		t.Fatalf("RequireLogin: %d %q", w.Code, w.Body.String())
	}
	w = a.do(http.MethodGet, "/", token, "X-Device", "ok")
	if w.Header().Get("X-User") != "alice" || w.Header().Get("X-Refused") != "false" {
		t.Fatalf("with the proof: user %q refused %q", w.Header().Get("X-User"), w.Header().Get("X-Refused"))
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// loginThroughApp signs user in through a's manager and returns the token.
func loginThroughApp(t *testing.T, a *app, user string) string {
	t.Helper()
	return loginThrough(t, a.m, user)
}

// Device.Bound reports a session holding a value under BindingValue.
func TestDeviceBound(t *testing.T) {
	a := newApp(t, nil)
	token := a.login("alice")
	a.login("alice")
	a.do(http.MethodPost, "/put?k="+cloakroom.BindingValue+"&v=%7B%7D", token)
	devices, err := a.m.Devices(t.Context(), "alice")
	if err != nil || len(devices) != 2 {
		t.Fatal(devices, err)
	}
	bound := 0
	for _, d := range devices {
		if d.Bound {
			bound++
		}
	}
	if bound != 1 {
		t.Fatalf("%d bound devices, want 1: %+v", bound, devices)
	}
}
