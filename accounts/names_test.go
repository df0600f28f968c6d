package accounts_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/internal/ascii"
)

// TestUnicodeNames: a Unicode name is accepted, stored in its canonical
// (NFC, half-width) form and found in any case or normalisation, on every
// store; a name mixing scripts is refused with a message that says so.
func TestUnicodeNames(t *testing.T) {
	for _, sf := range storeFactories {
		t.Run(sf.name, func(t *testing.T) {
			f := newFixture(t, sf.new(t))
			ctx := t.Context()
			const pw = "zoë's long password"
			f.mustAdd(t, "zoe\u0308", pw) // decomposed, stored composed
			u, err := f.svc.Get(ctx, "ZOË")
			if err != nil || u.Name != "zoë" {
				t.Fatalf("Get(ZOË) = %+v, %v; want the stored name zoë", u, err)
			}
			if err := f.svc.Add(ctx, "Zoë", "another long password", nil, ""); !errors.Is(err, accounts.ErrUserExists) {
				t.Errorf("Add(Zoë) after zoë: %v, want ErrUserExists", err)
			}
			for _, typed := range []string{"zoë", "ZOË", "Zoe\u0308"} {
				if u, err := f.svc.Authenticate(ctx, typed, pw, "192.0.2.1"); err != nil || u.Name != "zoë" {
					t.Errorf("login as %q = %+v, %v; want zoë", typed, u, err)
				}
			}
			if id, err := f.svc.SessionUserID(ctx, "ZOË"); err != nil || id != "zoë" {
				t.Errorf("SessionUserID(ZOË) = %q, %v; want zoë", id, err)
			}
			// Full-width letters are the ASCII name.
			f.mustAdd(t, "kate", "kate's long password")
			if err := f.svc.Add(ctx, "ｋａｔｅ", "kate's long password", nil, ""); !errors.Is(err, accounts.ErrUserExists) {
				t.Errorf("Add(full-width kate) after kate: %v, want ErrUserExists", err)
			}

			err = f.svc.Add(ctx, "zоë", pw, nil, "") // a Cyrillic "о"
			if !errors.Is(err, accounts.ErrInvalidInput) || err.Error() != "user name: 'zоë' mixes Latin and Cyrillic letters" {
				t.Errorf("Add of a Latin-Cyrillic name: %v", err)
			}
			if _, err := f.svc.Authenticate(ctx, "zоë", pw, "192.0.2.1"); err != accounts.ErrInvalidCredentials {
				t.Errorf("login as a look-alike: %v, want ErrInvalidCredentials", err)
			}
		})
	}
}

// TestASCIINamesKeepTheirFold: every name valid before Unicode names folds
// to its ASCII lower case, the key every store used, so existing accounts
// keep their identity.
func TestASCIINamesKeepTheirFold(t *testing.T) {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-"
	checked := 0
	for _, a := range chars {
		for _, b := range chars {
			name := "x" + string(a) + string(b) + "Y"
			if err := accounts.ValidateName(name); err != nil {
				t.Fatalf("ValidateName(%q): %v", name, err)
			}
			canon, _ := accounts.CanonicalName(name)
			if fold := accounts.FoldName(name); fold != ascii.Lower(name) || canon != name {
				t.Fatalf("%q: fold %q, canonical %q; want %q and the name unchanged", name, fold, canon, ascii.Lower(name))
			}
			checked++
		}
	}
	if checked != len(chars)*len(chars) {
		t.Fatal("not every pair checked")
	}
}

// TestUnicodeNameThrottleAndDevices: the throttle and the device tokens key
// an account by its fold, so guesses spelled in another case share the
// account's budget, and a device token issued to one spelling is known to
// every other.
func TestUnicodeNameThrottleAndDevices(t *testing.T) {
	f, _ := countingFixture(t)
	ctx := t.Context()
	const pw = "zoë's long password"
	f.mustAdd(t, "Zoë", pw)
	first, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "zoë", Password: pw, ClientIP: "203.0.113.1"})
	if err != nil {
		t.Fatal(err)
	}
	// Five free failures, each spelled differently and from a new address.
	spellings := []string{"ZOË", "zoë", "Zoe\u0308", "zOë", "ZOE\u0308"}
	for i, typed := range spellings {
		if _, err := f.svc.Authenticate(ctx, typed, "a wrong guess", fmt.Sprintf("198.51.100.%d", i)); err != accounts.ErrInvalidCredentials {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	_, err = f.svc.Authenticate(ctx, "zoë", pw, "198.51.100.99")
	throttled(t, err, time.Second)
	// The browser that signed in as "zoë" is known to "ZOË" too.
	if _, err := f.svc.Login(ctx, accounts.LoginAttempt{Name: "ZOË", Password: pw, ClientIP: "203.0.113.1", Devices: first.Devices}); err != nil {
		t.Errorf("known device, other spelling: %v", err)
	}
	if ref1, ref2 := f.svc.NameRef(ctx, "ZOË"), f.svc.NameRef(ctx, "zoe\u0308"); ref1 != ref2 || ref1 == "" {
		t.Errorf("NameRef differs by spelling: %q, %q", ref1, ref2)
	}
	if strings.Contains(first.Devices[0], "zo") {
		t.Error("device token carries the name")
	}
}

// TestWeakLegacyPasswordStillLogsIn: the password policy applies to new
// passwords only; one stored before it (here "password") keeps working,
// and changing it is held to the policy.
func TestWeakLegacyPasswordStillLogsIn(t *testing.T) {
	f := newFixture(t, memaccounts.New())
	ctx := t.Context()
	hash, err := accounts.HashPassword("password", testParams)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	if err := f.store.Create(ctx, accounts.Record{User: accounts.User{Name: "legacy", CreatedAt: now, PasswordChangedAt: now}, PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, "legacy", "password", "192.0.2.1"); err != nil {
		t.Fatalf("login with a password stored before the policy: %v", err)
	}
	_, err = f.svc.ChangeOwnPassword(ctx, accounts.LoginAttempt{Name: "legacy", Password: "password", ClientIP: "192.0.2.1"}, "password1")
	if !errors.Is(err, accounts.ErrWeakPassword) || !strings.HasPrefix(err.Error(), "This password is too common: ") {
		t.Errorf("changing to a common password: %v", err)
	}
}
