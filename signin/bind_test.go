package signin_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/signin"
)

// Config.Bind is called once per admission, with the new session and the
// sign-in answer's headers, for every way in; a failure leaves the sign-in
// standing; without headers to write to it is not called; a refused
// identity calls nothing.
func TestBindOfferedAtEveryAdmission(t *testing.T) {
	rg := newRig(t, 10)
	var calls []string
	fail := false
	var err error
	rg.admission, err = signin.New(signin.Config{
		Sessions: rg.m, Now: func() time.Time { return rg.now }, Logger: slog.New(slog.NewTextHandler(&rg.log, nil)),
		Bind: func(ctx context.Context, h http.Header, s *cloakroom.Session) error {
			if !s.LoggedIn() {
				t.Error("Bind called before the session is logged in")
			}
			calls = append(calls, s.UserID())
			h.Set("Secure-Session-Registration", "offered")
			if fail {
				return errors.New("store down")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for m, user := range map[signin.Method]string{signin.Password: "ann", signin.Passkey: "ann", signin.OIDC: "idp:ann", signin.Vault: "/app/ann"} {
		res, err := rg.admit(signin.Identity{UserID: user, Method: m, AuthTime: rg.now})
		if err != nil || res.Header.Get("Secure-Session-Registration") != "offered" {
			t.Fatalf("%s: %v, header %q", m, err, res.Header.Get("Secure-Session-Registration"))
		}
	}
	fail = true
	if _, err := rg.admit(signin.Identity{UserID: "ann", Method: signin.Password, AuthTime: rg.now}); err != nil {
		t.Fatalf("a failing offer failed the sign-in: %v", err)
	}
	if !strings.Contains(rg.log.String(), "device binding not offered") {
		t.Fatalf("the failure is not logged:\n%s", rg.log.String())
	}
	h := rg.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := rg.admission.Admit(r.Context(), r, nil, signin.Identity{UserID: "ann", Method: signin.Password, AuthTime: rg.now}); err != nil {
			t.Error(err)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "https://app.example/login", nil))
	if _, err := rg.admit(signin.Identity{UserID: "", Method: signin.Password, AuthTime: rg.now}); err == nil {
		t.Fatal("an invalid identity was admitted")
	}
	if len(calls) != 5 {
		t.Fatalf("Bind called %d times, want 5 (one per admission with headers)", len(calls))
	}
}
