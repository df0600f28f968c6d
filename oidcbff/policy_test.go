package oidcbff_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/signin"
)

// requireSecondFactor has the client admit through an admission that
// requires a second factor of roles.
func requireSecondFactor(roles ...string) envOption {
	return func(c *oidcbff.Config) {
		a, err := signin.New(signin.Config{Sessions: c.Admission.Sessions(), RequireSecondFactor: roles, Now: c.Now, Logger: c.Logger})
		if err != nil {
			panic(err)
		}
		c.Admission = a
	}
}

// TestSecondFactorPolicyJudgesTheProvidersAMR: a provider user with a role
// that requires a second factor is admitted when the ID token's amr names
// one (otp, hwk, swk, mfa), and refused with 403 and no session when it
// names none or only a password; users of other roles are not asked.
func TestSecondFactorPolicyJudgesTheProvidersAMR(t *testing.T) {
	var mp *mockProvider
	var amr []string
	var groups []string
	e := newEnvWith(t, 1, func([]string) *provider {
		mp = newMockProvider(t)
		mp.authorize.Store(ptr(func(url.Values) {
			mp.queue(mockUser{sub: "alice-sub", email: "alice@example.com", groups: groups, amr: amr})
		}))
		return mp.provider
	}, nil, requireSecondFactor("staff"))

	for _, c := range []struct {
		name   string
		groups []string
		amr    []string
		admit  bool
	}{
		{"staff, password only", []string{"staff"}, []string{"pwd"}, false},
		{"staff, no amr", []string{"staff", "dev"}, nil, false},
		{"staff, password and code", []string{"staff"}, []string{"pwd", "otp"}, true},
		{"staff, mfa", []string{"staff"}, []string{"mfa"}, true},
		{"staff, security key", []string{"staff"}, []string{"hwk"}, true},
		{"dev only, password", []string{"dev"}, []string{"pwd"}, true},
		// A value the identity headers cannot carry is dropped, not the
		// sign-in refused, and is no second factor.
		{"dev only, a value with a comma", []string{"dev"}, []string{"pwd,otp"}, true},
		{"staff, a value with a comma", []string{"staff"}, []string{"pwd,otp"}, false},
	} {
		groups, amr = c.groups, c.amr
		b := e.browser(e.nodes[0])
		r := b.login()
		switch {
		case c.admit && (r.Status != http.StatusSeeOther || b.sessionCookie() == ""):
			t.Errorf("%s: callback %d, cookie %q: %s", c.name, r.Status, b.sessionCookie(), r.Text)
		case !c.admit && (r.Status != http.StatusForbidden || b.sessionCookie() != "" || !strings.Contains(r.Text, "second factor")):
			t.Errorf("%s: callback %d, cookie %q, want 403 and no session: %s", c.name, r.Status, b.sessionCookie(), r.Text)
		}
	}
}
