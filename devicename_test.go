package cloakroom_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// Two devices with the same browser can be told apart by a name the user
// gives one. Naming writes the session without making it look used, the
// name survives a renewal, and a bad name, an unknown handle and another
// user's handle are refused.
func TestNameDevice(t *testing.T) {
	a := newApp(t, nil)
	ctx := context.Background()
	laptop := a.login("alice")
	a.clock.Advance(time.Minute)
	a.login("alice")
	a.login("bob")
	devices, err := a.m.Devices(ctx, "alice")
	if err != nil || len(devices) != 2 {
		t.Fatalf("devices: %v %v", devices, err)
	}
	first := devices[0]
	a.clock.Advance(10 * time.Minute)
	if err := a.m.NameDevice(ctx, "alice", first.Handle, "  Work laptop "); err != nil {
		t.Fatal(err)
	}
	devices, _ = a.m.Devices(ctx, "alice")
	if devices[0].Name != "Work laptop" || devices[1].Name != "" {
		t.Fatalf("names after naming the first device: %q, %q", devices[0].Name, devices[1].Name)
	}
	if !devices[0].LastSeen.Equal(first.LastSeen) {
		t.Errorf("naming moved the device's last-seen time from %v to %v", first.LastSeen, devices[0].LastSeen)
	}
	if got := a.whoami(laptop); got != "user=alice" {
		t.Fatalf("the named session: %q", got)
	}
	if w := a.do("POST", "/renew", laptop); w.Code != 200 {
		t.Fatalf("renew: %d", w.Code)
	}
	devices, _ = a.m.Devices(ctx, "alice")
	if devices[0].Name != "Work laptop" {
		t.Errorf("the name did not survive a renewal: %q", devices[0].Name)
	}
	for _, bad := range []string{strings.Repeat("x", cloakroom.MaxDeviceName+1), "tab\there", "bell\a", "\xff"} {
		if err := a.m.NameDevice(ctx, "alice", first.Handle, bad); !errors.Is(err, cloakroom.ErrInvalidInput) {
			t.Errorf("name %q: %v, want ErrInvalidInput", bad, err)
		}
	}
	if err := a.m.NameDevice(ctx, "bob", first.Handle, "mine now"); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Errorf("naming another user's device: %v, want ErrNotFound", err)
	}
	if err := a.m.NameDevice(ctx, "alice", "no-such-handle", "x"); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Errorf("naming an unknown handle: %v, want ErrNotFound", err)
	}
	if err := a.m.NameDevice(ctx, "alice", first.Handle, ""); err != nil {
		t.Fatal(err)
	}
	if devices, _ = a.m.Devices(ctx, "alice"); devices[0].Name != "" {
		t.Errorf("an empty name did not unname the device: %q", devices[0].Name)
	}
	// A revoked device cannot be named back to life.
	if err := a.m.RevokeDevice(ctx, "alice", first.Handle); err != nil {
		t.Fatal(err)
	}
	if err := a.m.NameDevice(ctx, "alice", first.Handle, "ghost"); !errors.Is(err, cloakroom.ErrNotFound) {
		t.Errorf("naming a revoked device: %v, want ErrNotFound", err)
	}
	if got := a.whoami(laptop); got != "user=" {
		t.Errorf("the revoked session after naming: %q", got)
	}
}
