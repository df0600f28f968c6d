package signin_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/signin"
)

// rig is a session manager behind its middleware, with an admission on an
// injectable clock.
type rig struct {
	t         *testing.T
	now       time.Time
	m         *cloakroom.Manager
	admission *signin.Admission
	log       bytes.Buffer
}

func newRig(t *testing.T, cap int) *rig {
	t.Helper()
	rg := &rig{t: t, now: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return rg.now }
	store := memstore.New(memstore.Config{Now: clock})
	t.Cleanup(func() { store.Close() })
	var err error
	rg.m, err = cloakroom.New(cloakroom.Config{Store: store, Now: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rg.m.Close() })
	rg.admission, err = signin.New(signin.Config{
		Sessions: rg.m, MaxSessionsPerUser: cap, Now: clock,
		Logger: slog.New(slog.NewTextHandler(&rg.log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rg
}

// admit runs one sign-in request and returns its response and error.
func (rg *rig) admit(id signin.Identity) (*http.Response, error) {
	var err error
	h := rg.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err = rg.admission.Admit(r.Context(), r, w.Header(), id)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "https://app.example/login", nil))
	return w.Result(), err
}

// session loads the session of the response's cookie.
func (rg *rig) session(res *http.Response) *cloakroom.Session {
	rg.t.Helper()
	var s *cloakroom.Session
	h := rg.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s = rg.m.Session(r) }))
	req := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	for _, c := range res.Cookies() {
		if c.Name == cloakroom.DefaultCookieName {
			req.AddCookie(c)
		}
	}
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !s.LoggedIn() {
		rg.t.Fatal("the admitted session is not logged in")
	}
	return s
}

func TestAdmitRecordsWhoAndHow(t *testing.T) {
	rg := newRig(t, 0)
	authAt := rg.now.Add(-time.Minute)
	res, err := rg.admit(signin.Identity{
		UserID: signin.ProviderUser("corp", "u-1"), Method: signin.OIDC, AMR: []string{"pwd", "otp", "mfa"},
		AuthTime: authAt, Email: "ann@example.com", Name: "Ann", Roles: []string{"staff"},
		Values: map[string]string{"oidc_ref": "r1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := rg.session(res)
	if got, ok := signin.AuthTime(s); !ok || !got.Equal(authAt) {
		t.Errorf("AuthTime = %v, %v; want %v", got, ok, authAt)
	}
	if got := signin.MethodOf(s); got != signin.OIDC {
		t.Errorf("MethodOf = %q", got)
	}
	if got := signin.KindOfSession(s); got != signin.KindProvider {
		t.Errorf("KindOfSession = %q", got)
	}
	if got := strings.Join(signin.AMR(s), " "); got != "pwd otp mfa" {
		t.Errorf("AMR = %q", got)
	}
	if signin.Email(s) != "ann@example.com" || signin.Name(s) != "Ann" || strings.Join(signin.Roles(s), ",") != "staff" || s.GetString("oidc_ref") != "r1" {
		t.Errorf("values: email %q name %q roles %v ref %q", signin.Email(s), signin.Name(s), signin.Roles(s), s.GetString("oidc_ref"))
	}
	if line := rg.log.String(); !strings.Contains(line, "msg=sign-in outcome=admitted method=oidc user=corp:u-1") {
		t.Errorf("audit line: %s", line)
	}
}

func TestAdmitRefusesAnotherWayInsNamespace(t *testing.T) {
	rg := newRig(t, 0)
	for _, id := range []signin.Identity{
		{UserID: "/api/:alice", Method: signin.Password},      // a vault user through the password form
		{UserID: "alice", Method: signin.Vault},               // an app user named like a local account
		{UserID: "corp:alice", Method: signin.Vault},          // or like a provider's user
		{UserID: "/api/:alice", Method: signin.OIDC},          // a provider claiming a vault user
		{UserID: "alice", Method: signin.OIDC},                // or a local account
		{UserID: "", Method: signin.Password},                 // nobody
		{UserID: "corp:alice", Method: signin.Passkey},        // a passkey claiming a provider's user
		{UserID: "/api/:alice", Method: signin.Passkey},       // or a vault user
		{UserID: "alice", Method: signin.Method("smartcard")}, // a way in the rules do not know
	} {
		res, err := rg.admit(id)
		if !errors.Is(err, signin.ErrInvalidIdentity) {
			t.Errorf("%s as %q: err = %v, want ErrInvalidIdentity", id.Method, id.UserID, err)
		}
		if len(res.Cookies()) != 0 {
			t.Errorf("%s as %q: a cookie was set", id.Method, id.UserID)
		}
	}
}

// TestAdmitRefusesAnAMRTheHeadersCannotCarry: an amr value that
// X-Forwarded-Amr would not carry as itself (a comma reads as two values
// there, "pwd,otp" as a second factor) starts no session, so no session
// holds what the proxy and forward auth would have to refuse.
func TestAdmitRefusesAnAMRTheHeadersCannotCarry(t *testing.T) {
	rg := newRig(t, 0)
	for _, amr := range [][]string{{"pwd,otp"}, {"pwd", ""}, {"otp\u00e9"}, {"pwd otp"}} {
		res, err := rg.admit(signin.Identity{UserID: "corp:u", Method: signin.OIDC, AMR: amr})
		if !errors.Is(err, signin.ErrInvalidIdentity) || len(res.Cookies()) != 0 {
			t.Errorf("amr %q: err = %v, %d cookies; want ErrInvalidIdentity and none", amr, err, len(res.Cookies()))
		}
	}
}

func TestAdmitRefusesAFutureAuthTime(t *testing.T) {
	rg := newRig(t, 0)
	id := signin.Identity{UserID: "corp:u", Method: signin.OIDC, AuthTime: rg.now.Add(2 * time.Minute)}
	if _, err := rg.admit(id); !errors.Is(err, signin.ErrInvalidIdentity) {
		t.Fatalf("auth_time two minutes ahead: err = %v, want ErrInvalidIdentity", err)
	}
	id.AuthTime = rg.now.Add(30 * time.Second) // within the skew
	if _, err := rg.admit(id); err != nil {
		t.Fatalf("auth_time within the skew: %v", err)
	}
}

func TestAdmitRefusesTheRulesOwnKeys(t *testing.T) {
	rg := newRig(t, 0)
	_, err := rg.admit(signin.Identity{UserID: "alice", Method: signin.Password,
		Values: map[string]string{signin.ValueAuthTime: rg.now.Format(time.RFC3339)}})
	if !errors.Is(err, signin.ErrInvalidIdentity) {
		t.Fatalf("a way in writing the authentication time itself: err = %v", err)
	}
}

// TestUnknownAuthTimeIsNeverRecent: a sign-in that cannot say when the
// user authenticated (a provider's silent login) never passes a step-up,
// however fresh the session.
func TestUnknownAuthTimeIsNeverRecent(t *testing.T) {
	rg := newRig(t, 0)
	res, err := rg.admit(signin.Identity{UserID: "corp:u", Method: signin.OIDC})
	if err != nil {
		t.Fatal(err)
	}
	s := rg.session(res)
	if _, ok := signin.AuthTime(s); ok {
		t.Fatal("an unknown authentication time was recorded")
	}
	if rg.admission.Recent(s, time.Hour) {
		t.Fatal("a session of unknown authentication time counts as recent")
	}
	res, err = rg.admit(signin.Identity{UserID: "alice", Method: signin.Password, AuthTime: rg.now})
	if err != nil {
		t.Fatal(err)
	}
	s = rg.session(res)
	if !rg.admission.Recent(s, 5*time.Minute) {
		t.Fatal("a sign-in of now is not recent")
	}
	rg.now = rg.now.Add(6 * time.Minute)
	if rg.admission.Recent(s, 5*time.Minute) {
		t.Fatal("a sign-in six minutes old is recent within five")
	}
}

// TestEveryWayInIsHeldToTheCap: the session cap holds whatever way in
// admits the sessions; the newest always stays.
func TestEveryWayInIsHeldToTheCap(t *testing.T) {
	for _, id := range []signin.Identity{
		{UserID: "alice", Method: signin.Password},
		{UserID: "corp:u", Method: signin.OIDC},
		{UserID: "/api/:u", Method: signin.Vault},
	} {
		t.Run(string(id.Method), func(t *testing.T) {
			rg := newRig(t, 3)
			var last *http.Response
			for range 7 {
				rg.now = rg.now.Add(time.Second) // the oldest is told by its creation time
				id.AuthTime = rg.now
				res, err := rg.admit(id)
				if err != nil {
					t.Fatal(err)
				}
				last = res
			}
			devices, err := rg.m.Devices(context.Background(), id.UserID)
			if err != nil {
				t.Fatal(err)
			}
			if len(devices) != 3 {
				t.Fatalf("%d live sessions after 7 sign-ins, want the cap of 3", len(devices))
			}
			s := rg.session(last)
			if !devices[len(devices)-1].CreatedAt.Equal(rg.now) || s.Handle() != devices[len(devices)-1].Handle {
				t.Fatal("the newest session is not among the survivors")
			}
		})
	}
}

// TestAdmitFailsWhenThePinMoved: an account change or a global revocation
// between the pin and the sign-in leaves nothing behind.
func TestAdmitFailsWhenThePinMoved(t *testing.T) {
	ctx := context.Background()
	rg := newRig(t, 0)
	pin, err := rg.m.Pin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := rg.m.RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	res, err := rg.admit(signin.Identity{UserID: "alice", Method: signin.Password, Pin: pin})
	if !errors.Is(err, signin.ErrChangedMeanwhile) || len(res.Cookies()) != 0 {
		t.Fatalf("after a generation bump: err = %v, cookies %v", err, res.Cookies())
	}
	epochPin, err := rg.m.PinEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rg.m.RevokeEveryone(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = rg.admit(signin.Identity{UserID: "/api/:u", Method: signin.Vault, Pin: epochPin})
	if !errors.Is(err, signin.ErrChangedMeanwhile) || len(res.Cookies()) != 0 {
		t.Fatalf("after a global revocation: err = %v, cookies %v", err, res.Cookies())
	}
	if devices, _ := rg.m.Devices(ctx, "/api/:u"); len(devices) != 0 {
		t.Fatalf("%d sessions left behind", len(devices))
	}
	if !strings.Contains(rg.log.String(), "outcome=changed_meanwhile") {
		t.Errorf("audit: %s", rg.log.String())
	}
}

func TestAdmitKeepsTheKnownDevice(t *testing.T) {
	rg := newRig(t, 0)
	res, err := rg.admit(signin.Identity{UserID: "alice", Method: signin.Password, DeviceTokens: []string{"t1", "t2"}})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range res.Cookies() {
		if c.Name == signin.DeviceCookie {
			found = true
			if c.Value != "t1.t2" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.MaxAge <= 0 {
				t.Errorf("device cookie %+v", c)
			}
		}
	}
	if !found {
		t.Fatal("no device cookie")
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: signin.DeviceCookie, Value: "t1.t2"})
	if got := signin.DeviceTokens(req); strings.Join(got, ",") != "t1,t2" {
		t.Errorf("DeviceTokens = %v", got)
	}
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want signin.Kind
	}{
		{signin.LocalUser("alice"), signin.KindLocal},
		{signin.ProviderUser("corp", "alice"), signin.KindProvider},
		{signin.ProviderUser("corp", "/x"), signin.KindProvider},
		{signin.VaultUser("/api/", "alice"), signin.KindVault},
		{signin.VaultUser("/api/", "corp:alice"), signin.KindVault},
	} {
		if got := signin.KindOf(tc.id); got != tc.want {
			t.Errorf("KindOf(%q) = %q, want %q", tc.id, got, tc.want)
		}
	}
}
