package redisaccounts

import (
	"slices"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
)

// FuzzUserFromRedis feeds arbitrary hash values to the Redis decoder: it
// must never panic, and what it accepts must encode back to an equivalent
// user.
func FuzzUserFromRedis(f *testing.F) {
	f.Add("alice", "a@example.com", `["admin","ops"]`, "0", "1795942800123456000", "0")
	f.Add("Bob", "", `[]`, "1", "0", "-5")
	f.Add("x", "", `null`, "2", "", "9")
	f.Add("x", "", `["a",1]`, "0", "9223372036854775807", "1")
	f.Add("x", "", `{"a":1}`, "1", "1e9", "0x10")
	f.Fuzz(func(t *testing.T, name, email, roles, disabled, created, changed string) {
		u, err := userFromRedis([6]string{name, email, roles, disabled, created, changed})
		if err != nil {
			return
		}
		if u.Name != name || u.Email != email || u.Roles == nil {
			t.Fatalf("decoded %+v from name %q email %q", u, name, email)
		}
		again, err := userToRedis(u)
		if err != nil {
			t.Fatalf("cannot encode %+v: %v", u, err)
		}
		back, err := userFromRedis(again)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", again, err)
		}
		if back.Name != u.Name || back.Email != u.Email || !slices.Equal(back.Roles, u.Roles) || back.Disabled != u.Disabled ||
			!back.CreatedAt.Equal(u.CreatedAt) || !back.PasswordChangedAt.Equal(u.PasswordChangedAt) {
			t.Fatalf("round trip changed %+v into %+v", u, back)
		}
	})
}

func TestUserRedisRoundTrip(t *testing.T) {
	u := accounts.User{Name: "Alice", Email: "a@example.com", Roles: []string{"admin"}, Disabled: true,
		CreatedAt: time.Date(2026, 11, 28, 9, 0, 0, 123456789, time.UTC)}
	values, err := userToRedis(u)
	if err != nil {
		t.Fatal(err)
	}
	back, err := userFromRedis(values)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != u.Name || !back.CreatedAt.Equal(u.CreatedAt) || !back.PasswordChangedAt.IsZero() || !back.Disabled || !slices.Equal(back.Roles, u.Roles) {
		t.Errorf("round trip: %+v", back)
	}
}
