package signin_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/signin"
)

// newPolicyRig is a rig whose admission requires a second factor of the
// roles given.
func newPolicyRig(t *testing.T, roles ...string) *rig {
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
	rg.admission, err = signin.New(signin.Config{Sessions: rg.m, Now: clock, RequireSecondFactor: roles,
		Logger: slog.New(slog.NewTextHandler(&rg.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return rg
}

func TestSecondFactorPolicy(t *testing.T) {
	rg := newPolicyRig(t, "admin", "ops")
	cases := []struct {
		name  string
		id    signin.Identity
		admit bool
	}{
		{"local admin with password only", signin.Identity{UserID: "alice", Method: signin.Password, AMR: []string{"pwd"}, Roles: []string{"dev", "admin"}}, false},
		{"local admin with password and code", signin.Identity{UserID: "alice", Method: signin.Password, AMR: []string{"pwd", "otp"}, Roles: []string{"admin"}}, true},
		{"local user of another role", signin.Identity{UserID: "bob", Method: signin.Password, AMR: []string{"pwd"}, Roles: []string{"dev"}}, true},
		{"provider admin, provider says mfa", signin.Identity{UserID: "corp:1", Method: signin.OIDC, AMR: []string{"pwd", "mfa"}, Roles: []string{"ops"}}, true},
		{"provider admin, security key", signin.Identity{UserID: "corp:2", Method: signin.OIDC, AMR: []string{"hwk"}, Roles: []string{"ops"}}, true},
		{"provider admin, no amr", signin.Identity{UserID: "corp:3", Method: signin.OIDC, Roles: []string{"ops"}}, false},
		{"provider admin, sms only", signin.Identity{UserID: "corp:4", Method: signin.OIDC, AMR: []string{"pwd", "sms"}, Roles: []string{"ops"}}, false},
		{"role names are exact", signin.Identity{UserID: "corp:5", Method: signin.OIDC, AMR: []string{"pwd"}, Roles: []string{"Admin", "admins"}}, true},
		{"vault user with the role", signin.Identity{UserID: "/api/:7", Method: signin.Vault, Roles: []string{"admin"}}, false},
	}
	for _, c := range cases {
		if got := rg.admission.NeedsSecondFactor(c.id); got == c.admit {
			t.Errorf("%s: NeedsSecondFactor = %v", c.name, got)
		}
		resp, err := rg.admit(c.id)
		switch {
		case c.admit && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case !c.admit && !errors.Is(err, signin.ErrSecondFactorRequired):
			t.Errorf("%s: %v, want ErrSecondFactorRequired", c.name, err)
		case !c.admit && len(resp.Cookies()) != 0:
			t.Errorf("%s: refused, yet set cookies %v", c.name, resp.Cookies())
		}
	}
	if !strings.Contains(rg.log.String(), "outcome=second_factor_required") {
		t.Errorf("refusals not audited as second_factor_required:\n%s", rg.log.String())
	}
}

func TestSecondFactorPolicyDefaultNone(t *testing.T) {
	rg := newRig(t, 0)
	id := signin.Identity{UserID: "alice", Method: signin.Password, AMR: []string{"pwd"}, Roles: []string{"admin"}}
	if rg.admission.NeedsSecondFactor(id) {
		t.Error("a second factor required without a policy")
	}
	if _, err := rg.admit(id); err != nil {
		t.Errorf("admit without a policy: %v", err)
	}
}

func TestSecondFactorPolicyRolesChecked(t *testing.T) {
	for _, bad := range [][]string{{""}, {"a b"}, {strings.Repeat("r", 200)}} {
		if _, err := signin.New(signin.Config{Sessions: newRig(t, 0).m, RequireSecondFactor: bad}); !errors.Is(err, signin.ErrInvalidConfig) {
			t.Errorf("RequireSecondFactor %q: %v, want ErrInvalidConfig", bad, err)
		}
	}
}
