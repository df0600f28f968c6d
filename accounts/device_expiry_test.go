package accounts_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
)

// knownDevice reports whether devices make a known device for name: with
// the account's budget for unknown devices spent, only a known device
// gets in.
func knownDevice(t *testing.T, f *fixture, name, password string, devices []string) (accounts.LoginResult, bool) {
	t.Helper()
	res, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: name, Password: password, ClientIP: "192.0.2.1", Devices: devices})
	switch {
	case err == nil:
		return res, true
	case errors.Is(err, accounts.ErrThrottled):
		return res, false
	}
	t.Fatalf("login of %s: %v", name, err)
	return res, false
}

// spendUnknownBudget makes the account's unknown-device budget blocked for
// longer than the test looks.
func spendUnknownBudget(t *testing.T, f *fixture, name string) {
	t.Helper()
	for i := range 12 {
		f.svc.Authenticate(t.Context(), name, "a wrong guess", fmt.Sprintf("198.51.100.%d", i))
	}
	if _, err := f.svc.Authenticate(t.Context(), name, "a wrong guess", "198.51.100.200"); !errors.Is(err, accounts.ErrThrottled) {
		t.Fatalf("the unknown-device budget of %s is not spent: %v", name, err)
	}
}

// TestDeviceTokenLifetime: a device token is known for
// DeviceTokenLifetime after it was issued (default 90 days), then it is
// an unknown device's; each login from a known device renews it, keeping
// its throttling key.
func TestDeviceTokenLifetime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration // configured; 0 for the default
		want     time.Duration
	}{
		{"Default", 0, 90 * 24 * time.Hour},
		{"Configured", 6 * time.Hour, 6 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := countingFixture(t, func(c *accounts.Config) {
				c.DeviceTokenLifetime = tc.lifetime
				// Blocks outlast the lifetime, so only the token decides.
				c.AccountThrottle = accounts.ThrottleConfig{FreeFailures: 1, BaseDelay: 365 * 24 * time.Hour, MaxDelay: 365 * 24 * time.Hour}
			})
			const pw = "alice's long password"
			f.mustAdd(t, "alice", pw)
			first, err := f.svc.Login(t.Context(), accounts.LoginAttempt{Name: "alice", Password: pw, ClientIP: "192.0.2.1"})
			if err != nil {
				t.Fatal(err)
			}
			spendUnknownBudget(t, f, "alice")

			f.clock.Advance(tc.want - time.Second)
			renewed, ok := knownDevice(t, f, "alice", pw, first.Devices)
			if !ok {
				t.Fatalf("token unknown a second before its lifetime ends")
			}
			if renewed.Devices[0] == first.Devices[0] {
				t.Error("a login from a known device did not renew its token")
			}
			f.clock.Advance(2 * time.Second)
			if _, ok := knownDevice(t, f, "alice", pw, first.Devices); ok {
				t.Errorf("token still known after its lifetime of %v", tc.want)
			}
			// The renewed one counts from its renewal.
			f.clock.Advance(tc.want - 3*time.Second)
			if _, ok := knownDevice(t, f, "alice", pw, renewed.Devices); !ok {
				t.Error("the renewed token expired with the first")
			}
		})
	}
}

// TestPasswordChangeEndsDeviceTokens: a password change, by an admin or by
// the user, ends every device token of the account; the browser that
// changed its own password gets a new token in the same answer, so the
// change cannot lock its user out.
func TestPasswordChangeEndsDeviceTokens(t *testing.T) {
	f, _ := countingFixture(t, func(c *accounts.Config) {
		c.AccountThrottle = accounts.ThrottleConfig{FreeFailures: 1, BaseDelay: 24 * time.Hour, MaxDelay: 24 * time.Hour}
	})
	ctx := t.Context()
	const pw1, pw2, pw3 = "alice's first password", "alice's second password", "alice's third password"
	f.mustAdd(t, "alice", pw1)
	f.mustAdd(t, "bob", "bob's long password")
	login := func(password string) []string {
		res, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: password, ClientIP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		return res.Devices
	}
	laptop, phone := login(pw1), login(pw1)
	bobs, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "bob", Password: "bob's long password", ClientIP: "192.0.2.1", Devices: laptop})
	if err != nil {
		t.Fatal(err)
	}
	spendUnknownBudget(t, f, "alice")

	// The frozen clock does not keep the old tokens alive: a change is a
	// new generation even within the same instant.
	if err := f.svc.SetPassword(ctx, "alice", pw2); err != nil {
		t.Fatal(err)
	}
	for what, devices := range map[string][]string{"laptop": laptop, "phone": phone, "bob's browser": bobs.Devices} {
		if _, ok := knownDevice(t, f, "alice", pw2, devices); ok {
			t.Errorf("%s: alice's token from before the admin's password change is still known", what)
		}
	}
	// Bob's own token is untouched by alice's change.
	if _, ok := knownDevice(t, f, "bob", "bob's long password", bobs.Devices); !ok {
		t.Error("alice's password change ended bob's device token")
	}

	// Alice's own change, from a browser with a token of the current
	// generation and bob's: she gets a new one, bob's is kept.
	f.clock.Advance(48 * time.Hour) // let the account's block lapse
	current := login(pw2)
	current = append(current, bobs.Devices[0])
	spendUnknownBudget(t, f, "alice")
	res, err := f.svc.ChangeOwnPassword(ctx, accounts.LoginAttempt{Name: "ALICE", Password: pw2, ClientIP: "192.0.2.1", Devices: current}, pw3)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 2 || res.Devices[1] != bobs.Devices[0] {
		t.Fatalf("devices after the change %q, want alice's new token then bob's", res.Devices)
	}
	if _, ok := knownDevice(t, f, "alice", pw3, current); ok {
		t.Error("the token from before alice's own change is still known")
	}
	if _, ok := knownDevice(t, f, "alice", pw3, res.Devices); !ok {
		t.Error("the changer's new token is not known: the change locked her out")
	}
}
