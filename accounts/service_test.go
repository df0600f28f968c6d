package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

// TestService runs the same service-level suite on every Store.
func TestService(t *testing.T) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) { serviceSuite(t, f.new) })
	}
}

func serviceSuite(t *testing.T, newStore func(*testing.T) accounts.Store) {
	t.Run("AddGetListDelete", func(t *testing.T) { testAddGetListDelete(t, newFixture(t, newStore(t))) })
	t.Run("Validation", func(t *testing.T) { testValidation(t, newFixture(t, newStore(t))) })
	t.Run("Authenticate", func(t *testing.T) { testAuthenticate(t, newFixture(t, newStore(t))) })
	t.Run("SetPassword", func(t *testing.T) { testSetPassword(t, newFixture(t, newStore(t))) })
	t.Run("ChangeOwnPassword", func(t *testing.T) { testChangeOwnPassword(t, newFixture(t, newStore(t))) })
	t.Run("RolesAndEmail", func(t *testing.T) { testRolesAndEmail(t, newFixture(t, newStore(t))) })
	t.Run("RevokeSessions", func(t *testing.T) { testRevokeSessions(t, newFixture(t, newStore(t))) })
	t.Run("RevokeFailure", func(t *testing.T) { testRevokeFailure(t, newFixture(t, newStore(t))) })
	t.Run("NoRevoker", func(t *testing.T) {
		testNoRevoker(t, newFixture(t, newStore(t), func(c *accounts.Config) { c.RevokeSessions = nil }))
	})
	t.Run("Rehash", func(t *testing.T) { testRehash(t, newStore(t)) })
	t.Run("CheckPasswordHook", func(t *testing.T) { testCheckPasswordHook(t, newStore(t)) })
}

func testAddGetListDelete(t *testing.T, f *fixture) {
	ctx := t.Context()
	created := f.clock.Now()
	if err := f.svc.Add(ctx, "Alice", "alice's long password", []string{"admin", "ops"}, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.mustAdd(t, "bob", "bob's long password")

	u, err := f.svc.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "Alice" || u.Email != "alice@example.com" || !slices.Equal(u.Roles, []string{"admin", "ops"}) ||
		u.Disabled || !u.CreatedAt.Equal(created) || !u.PasswordChangedAt.Equal(created) {
		t.Errorf("Get(alice) = %+v", u)
	}
	if err := f.svc.Add(ctx, "ALICE", "another long password", nil, ""); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("Add(ALICE) after Alice: %v, want ErrUserExists", err)
	}

	users, err := f.svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Name != "Alice" || users[1].Name != "bob" {
		t.Errorf("List = %+v", users)
	}

	if err := f.svc.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Get(ctx, "Alice"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get after Delete: %v, want ErrNoSuchUser", err)
	}
	if err := f.svc.Delete(ctx, "alice"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("second Delete: %v, want ErrNoSuchUser", err)
	}
	if users, _ := f.svc.List(ctx); len(users) != 1 {
		t.Errorf("List after Delete has %d users, want 1", len(users))
	}
}

func testValidation(t *testing.T, f *fixture) {
	ctx := t.Context()
	const good = "a good long password"
	long := func(n int) string { return strings.Repeat("a", n) }
	manyRoles := make([]string, 33)
	for i := range manyRoles {
		manyRoles[i] = "role" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	bad := []struct {
		name, password, email string
		roles                 []string
		wantInMessage         string
	}{
		{name: "", password: good, wantInMessage: "empty"},
		{name: long(65), password: good, wantInMessage: "at most 64"},
		{name: "al ice", password: good, wantInMessage: `' '`},
		{name: "al/ice", password: good, wantInMessage: `'/'`},
		{name: "alice\x00", password: good, wantInMessage: `'\x00'`},
		{name: "zоë", password: good, wantInMessage: "user name: 'zоë' mixes Latin and Cyrillic letters"},
		{name: "Ζeus", password: good, wantInMessage: "mixes Greek and Latin letters"},
		{name: "a‮b", password: good, wantInMessage: "U+202E"},
		{name: "ali：ce", password: good, wantInMessage: "':'"}, // a full-width colon is a colon
		{name: "̈a", password: good, wantInMessage: "U+0308"},
		{name: strings.Repeat("ë", 33), password: good, wantInMessage: "at most 64"},
		{name: ".alice", password: good, wantInMessage: "'.'"},
		{name: "alice.", password: good, wantInMessage: "'.'"},
		{name: "-alice", password: good, wantInMessage: "'-'"},
		{name: "alice", password: good, roles: []string{"ad min"}, wantInMessage: "role"},
		{name: "alice", password: good, roles: []string{""}, wantInMessage: "role is empty"},
		{name: "alice", password: good, roles: []string{"ops", "ops"}, wantInMessage: "twice"},
		{name: "alice", password: good, roles: manyRoles, wantInMessage: "at most 32 roles"},
		{name: "alice", password: good, email: "not an address", wantInMessage: "email"},
		{name: "alice", password: good, email: "Alice <alice@example.com>", wantInMessage: "email"},
		{name: "alice", password: good, email: long(250) + "@x.io", wantInMessage: "email"},
		{name: "alice", password: "short12", wantInMessage: "at least 8"},
		{name: "alice", password: "ééééééé", wantInMessage: "7 characters"}, // 14 bytes, 7 characters
		{name: "alice", password: long(1025), wantInMessage: "at most 1024"},
		{name: "alice", password: "line one\nline two", wantInMessage: "control"},
		{name: "alice", password: "tab\tinside it", wantInMessage: "control"},
		{name: "alice", password: "bad utf8 \xff\xfe here", wantInMessage: "UTF-8"},
		{name: "alice.smith", password: "alice.smith", wantInMessage: "user name"},
		{name: "alice.smith", password: "ALICE.Smith", wantInMessage: "user name"},
		{name: "alice", password: "alice@example.com", email: "alice@example.com", wantInMessage: "email"},
		// ASVS 6.2.4 and 6.2.11: common and guessable passwords.
		{name: "alice", password: "password", wantInMessage: "This password is too common: "},
		{name: "alice", password: "PassWord", wantInMessage: "This password is too common: "},
		{name: "alice", password: "12345678", wantInMessage: "This password is too common: "},
		{name: "alice", password: "sunshine2026!", wantInMessage: "common password with digits or symbols added"},
		{name: "alice", password: "        ", wantInMessage: "one character repeated"}, // eight spaces
		{name: "alice", password: strings.Repeat("é", 512), wantInMessage: "one character repeated"},
		{name: "alice", password: "abcabcabc", wantInMessage: "repeats a pattern of 3 characters"},
		{name: "alice", password: "abcdefghij", wantInMessage: "consecutive characters"},
		{name: "alice", password: "98765432", wantInMessage: "consecutive characters"},
		{name: "alice", password: "fghjkl;'", wantInMessage: "row of keys"},
		{name: "alice", password: "lkjhgfdsapoiu", wantInMessage: "row of keys"}, // backwards, into the row above
		{name: "alice", password: "4567890-=", wantInMessage: "row of keys"},
		{name: "alice.smith", password: "Alice.Smith2026!", wantInMessage: "your user name with only digits or symbols added"},
		{name: "zoë", password: "ZOË ZOË 1999", wantInMessage: "your user name with only digits or symbols added"},
		{name: "alice", password: "Wonder.Land.99", email: "wonder.land@example.com", wantInMessage: "email"},
	}
	for _, tc := range bad {
		err := f.svc.Add(ctx, tc.name, tc.password, tc.roles, tc.email)
		if !errors.Is(err, accounts.ErrInvalidInput) {
			t.Errorf("Add(%q, %q, %q, %q) = %v, want ErrInvalidInput", tc.name, tc.password, tc.roles, tc.email, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantInMessage) {
			t.Errorf("Add(%q, ...) error %q does not mention %q", tc.name, err, tc.wantInMessage)
		}
		// "password" is also a word of the message.
		if len(tc.password) >= 8 && tc.password != "password" && tc.password != tc.name && tc.password != tc.email && strings.Contains(err.Error(), tc.password) {
			t.Errorf("error %q repeats the password", err)
		}
	}
	if users, _ := f.svc.List(ctx); len(users) != 0 {
		t.Errorf("invalid Adds created %d users", len(users))
	}

	// Edges that must be accepted: ASVS 6.2.5 (any composition), 6.2.9 (at
	// least 64 characters), spaces and any printable Unicode.
	good8 := []struct{ name, password string }{
		{"a", "7 kiwis!"},
		{long(64), "   mu  " + " "}, // eight characters, mostly spaces
		{"user_1@example.com", "pässwörd"},
		{"Bob-2.x", "🔑🔑🔑🔑 ключ 钥匙"},
		{"c", "👩‍👩‍👧‍👦 family emoji with zero-width joiners"},
		{"d", strings.Repeat("x", 63) + "y"},
		{"e", strings.Repeat("yz", 511) + "ab"},
		{"f", strings.Repeat("é", 511) + "ü"}, // 1024 bytes
		{"zoë", "zoë's long password"},        // the name with words added
		{"Élise", "Élise à Paris"},
		{"ｋａｔｅ", "kate's long password"}, // full-width, stored as "kate"
		{"山田たろう", "山田たろうの長いパスワード"},
		{"Ἀριστοτέλης", "γνῶθι σεαυτόν"},
	}
	for _, tc := range good8 {
		if err := f.svc.Add(ctx, tc.name, tc.password, nil, ""); err != nil {
			t.Errorf("Add(%q) with a valid password: %v", tc.name, err)
			continue
		}
		if _, err := f.svc.Authenticate(ctx, tc.name, tc.password, "192.0.2.1"); err != nil {
			t.Errorf("Authenticate(%q) with its password: %v", tc.name, err)
		}
	}

	// Every other entry point validates the name too.
	for op, err := range map[string]error{
		"SetPassword": f.svc.SetPassword(ctx, "a b", good),
		"SetRoles":    f.svc.SetRoles(ctx, "a b", nil),
		"SetEmail":    f.svc.SetEmail(ctx, "a b", ""),
		"Disable":     f.svc.Disable(ctx, "a b"),
		"Enable":      f.svc.Enable(ctx, "a b"),
		"Delete":      f.svc.Delete(ctx, "a b"),
	} {
		if !errors.Is(err, accounts.ErrInvalidInput) {
			t.Errorf("%s with an invalid name: %v, want ErrInvalidInput", op, err)
		}
	}
	if _, err := f.svc.Get(ctx, "a b"); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("Get with an invalid name: %v", err)
	}
	if err := f.svc.SetRoles(ctx, "a", []string{"x y"}); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("SetRoles with an invalid role: %v", err)
	}
	if err := f.svc.SetEmail(ctx, "a", "nope"); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("SetEmail with an invalid address: %v", err)
	}
	if err := f.svc.SetPassword(ctx, "a", "short"); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("SetPassword with a short password: %v", err)
	}
}

func testAuthenticate(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "Alice", "alice's long password", "admin")
	f.mustAdd(t, "carol", "carol's long password")
	if err := f.svc.Disable(ctx, "carol"); err != nil {
		t.Fatal(err)
	}

	u, err := f.svc.Authenticate(ctx, "alice", "alice's long password", "192.0.2.1")
	if err != nil {
		t.Fatalf("Authenticate with the right password: %v", err)
	}
	if u.Name != "Alice" || !slices.Equal(u.Roles, []string{"admin"}) {
		t.Errorf("Authenticate returned %+v, want the stored user Alice", u)
	}

	for _, tc := range []struct{ what, name, password string }{
		{"wrong password", "Alice", "alice's long passworD"},
		{"unknown user", "mallory", "alice's long password"},
		{"disabled user, right password", "carol", "carol's long password"},
		{"invalid name", "a b", "whatever password"},
		{"empty password", "Alice", ""},
		{"oversized password", "Alice", strings.Repeat("x", 1025)},
	} {
		u, err := f.svc.Authenticate(ctx, tc.name, tc.password, "192.0.2.2")
		// Exactly the sentinel, not a wrapped variant whose message differs.
		if err != accounts.ErrInvalidCredentials || u.Name != "" {
			t.Errorf("%s: Authenticate = %+v, %v; want exactly ErrInvalidCredentials", tc.what, u, err)
		}
	}

	if err := f.svc.Enable(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, "carol", "carol's long password", "192.0.2.3"); err != nil {
		t.Errorf("Authenticate after Enable: %v", err)
	}
}

func testSetPassword(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "Alice", "the old long password")
	f.clock.Advance(time.Hour)
	if err := f.svc.SetPassword(ctx, "alice", "the new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "the old long password", "192.0.2.1"); err != accounts.ErrInvalidCredentials {
		t.Errorf("old password after SetPassword: %v", err)
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "the new long password", "192.0.2.1"); err != nil {
		t.Errorf("new password after SetPassword: %v", err)
	}
	u, _ := f.svc.Get(ctx, "alice")
	if !u.PasswordChangedAt.Equal(f.clock.Now()) || u.CreatedAt.Equal(u.PasswordChangedAt) {
		t.Errorf("PasswordChangedAt = %v, CreatedAt = %v; want the change time %v", u.PasswordChangedAt, u.CreatedAt, f.clock.Now())
	}
	if err := f.svc.SetPassword(ctx, "nobody", "some long password"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("SetPassword(nobody): %v, want ErrNoSuchUser", err)
	}
	if err := f.svc.SetPassword(ctx, "alice", "ALICE"+"x"); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("SetPassword with a short password: %v", err)
	}
}

// testChangeOwnPassword: the current password is checked as a login is
// (a wrong one is ErrInvalidCredentials and changes nothing), the new one
// is validated, and the change ends no session: the caller keeps the one
// that made it.
func testChangeOwnPassword(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "alice", "the old long password")
	attempt := func(current string) accounts.LoginAttempt {
		return accounts.LoginAttempt{Name: "alice", Password: current, ClientIP: "192.0.2.1"}
	}
	_, err := f.svc.ChangeOwnPassword(ctx, attempt("not the current one"), "the new long password")
	if err != accounts.ErrInvalidCredentials {
		t.Fatalf("ChangeOwnPassword with a wrong current password: %v", err)
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "the old long password", "192.0.2.1"); err != nil {
		t.Fatalf("old password stopped working after a refused change: %v", err)
	}
	if _, err := f.svc.ChangeOwnPassword(ctx, attempt("the old long password"), "short"); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("ChangeOwnPassword to a short password: %v", err)
	}
	if _, err := f.svc.ChangeOwnPassword(ctx, attempt("the old long password"), "the new long password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "the new long password", "192.0.2.1"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "the old long password", "192.0.2.1"); err != accounts.ErrInvalidCredentials {
		t.Errorf("old password after the change: %v, want ErrInvalidCredentials", err)
	}
	if got := f.revoker.Calls(); len(got) != 0 {
		t.Errorf("RevokeSessions calls %q, want none", got)
	}
}

func testRolesAndEmail(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password", "viewer")
	if err := f.svc.SetRoles(ctx, "ALICE", []string{"admin", "ops"}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetEmail(ctx, "alice", "a@example.com"); err != nil {
		t.Fatal(err)
	}
	u, _ := f.svc.Get(ctx, "alice")
	if !slices.Equal(u.Roles, []string{"admin", "ops"}) || u.Email != "a@example.com" {
		t.Errorf("after SetRoles and SetEmail: %+v", u)
	}
	if err := f.svc.SetRoles(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.svc.Get(ctx, "alice"); len(u.Roles) != 0 {
		t.Errorf("roles after SetRoles(nil): %q", u.Roles)
	}
	if err := f.svc.SetRoles(ctx, "nobody", nil); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("SetRoles(nobody): %v", err)
	}
	// Two role changes end alice's sessions twice (roles are a privilege);
	// the email change ends none.
	if got := f.revoker.Calls(); !slices.Equal(got, []string{"alice", "alice"}) {
		t.Errorf("revocations after two role changes and one email change: %q, want two for alice", got)
	}
}

func testRevokeSessions(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "Alice", "alice's long password")
	f.mustAdd(t, "Bob", "bob's long password")
	f.mustAdd(t, "Carol", "carol's long password")
	if err := f.svc.Disable(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetPassword(ctx, "bob", "bob's new long password"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Delete(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Enable(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// The stored name, in its case, is what sessions were created with.
	if got, want := f.revoker.Calls(), []string{"Alice", "Bob", "Carol"}; !slices.Equal(got, want) {
		t.Errorf("RevokeSessions calls %q, want %q", got, want)
	}
}

func testRevokeFailure(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password")
	f.mustAdd(t, "bob", "bob's long password")
	f.mustAdd(t, "carol", "carol's long password")
	storeDown := errors.New("session store down")
	f.revoker.Fail(storeDown)

	if err := f.svc.Disable(ctx, "alice"); !errors.Is(err, storeDown) {
		t.Errorf("Disable with a failing revoker: %v, want its error", err)
	}
	// The account stays disabled: failing closed.
	if u, _ := f.svc.Get(ctx, "alice"); !u.Disabled {
		t.Error("alice is enabled after a Disable whose revocation failed")
	}
	if err := f.svc.SetPassword(ctx, "bob", "bob's new long password"); !errors.Is(err, storeDown) {
		t.Errorf("SetPassword with a failing revoker: %v, want its error", err)
	}
	if err := f.svc.Delete(ctx, "carol"); !errors.Is(err, storeDown) {
		t.Errorf("Delete with a failing revoker: %v, want its error", err)
	}
	// Carol is still there, disabled, so Delete can be retried.
	u, err := f.svc.Get(ctx, "carol")
	if err != nil || !u.Disabled {
		t.Errorf("after a failed Delete: %+v, %v; want carol kept, disabled", u, err)
	}
	if _, err := f.svc.Authenticate(ctx, "carol", "carol's long password", "192.0.2.1"); err != accounts.ErrInvalidCredentials {
		t.Errorf("carol can log in after a failed Delete: %v", err)
	}

	f.revoker.Fail(nil)
	if err := f.svc.Delete(ctx, "carol"); err != nil {
		t.Errorf("retried Delete: %v", err)
	}
	if err := f.svc.Disable(ctx, "alice"); err != nil {
		t.Errorf("retried Disable: %v", err)
	}
}

func testNoRevoker(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.mustAdd(t, "alice", "alice's long password")
	for op, err := range map[string]error{
		"Disable":     f.svc.Disable(ctx, "alice"),
		"Delete":      f.svc.Delete(ctx, "alice"),
		"SetPassword": f.svc.SetPassword(ctx, "alice", "another long password"),
	} {
		if !errors.Is(err, accounts.ErrNoRevoker) {
			t.Errorf("%s without RevokeSessions: %v, want ErrNoRevoker", op, err)
		}
	}
	// Nothing changed.
	if u, err := f.svc.Get(ctx, "alice"); err != nil || u.Disabled {
		t.Errorf("alice after refused operations: %+v, %v", u, err)
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "alice's long password", "192.0.2.1"); err != nil {
		t.Errorf("password changed by a refused SetPassword: %v", err)
	}
}

func testRehash(t *testing.T, store accounts.Store) {
	ctx := t.Context()
	old := newFixture(t, store)
	old.mustAdd(t, "alice", "alice's long password")
	before, _ := store.Get(ctx, "alice")

	stronger := testParams
	stronger.Time = 2
	stronger.Memory = 128
	f := newFixture(t, store, func(c *accounts.Config) { *c = accounts.WithHashParams(*c, stronger) })
	if _, err := f.svc.Authenticate(ctx, "alice", "alice's long password", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	after, _ := store.Get(ctx, "alice")
	h, err := accounts.ParseHash(after.PasswordHash)
	if err != nil || h.Params != stronger {
		t.Fatalf("hash after login with stronger parameters: %+v, %v", h.Params, err)
	}
	if !after.PasswordChangedAt.Equal(before.PasswordChangedAt) {
		t.Error("rehashing changed PasswordChangedAt")
	}
	if _, err := f.svc.Authenticate(ctx, "alice", "alice's long password", "192.0.2.1"); err != nil {
		t.Errorf("login after rehash: %v", err)
	}
	// A failed login rehashes nothing.
	f2 := newFixture(t, store)
	f2.svc.Authenticate(ctx, "alice", "wrong long password", "192.0.2.1")
	if again, _ := store.Get(ctx, "alice"); again.PasswordHash != after.PasswordHash {
		t.Error("a failed login rewrote the hash")
	}
}

func testCheckPasswordHook(t *testing.T, store accounts.Store) {
	common := map[string]bool{"password1234": true, "qwertyuiop": true}
	f := newFixture(t, store, func(c *accounts.Config) {
		c.CheckPassword = func(_ context.Context, _, password string) error {
			if common[strings.ToLower(password)] {
				return accounts.ErrInvalidInput
			}
			return nil
		}
	})
	if err := f.svc.Add(t.Context(), "alice", "Password1234", nil, ""); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("Add with a listed password: %v", err)
	}
	f.mustAdd(t, "alice", "a rarer long password")
	if err := f.svc.SetPassword(t.Context(), "alice", "qwertyuiop"); !errors.Is(err, accounts.ErrInvalidInput) {
		t.Errorf("SetPassword with a listed password: %v", err)
	}
}

// downStore fails every call, as a database that cannot be reached does.
type downStore struct{ accounts.Store }

var errDown = errors.New("connection refused")

func (downStore) Get(context.Context, string) (accounts.Record, error) {
	return accounts.Record{}, errDown
}
func (downStore) List(context.Context) ([]accounts.User, error) { return nil, errDown }

// TestStoreFailureIsUnavailable: a store failure reaches the caller as
// ErrStoreUnavailable (wrapping the store's error), so a gateway answers
// 503; the store contract's own answers are not marked.
func TestStoreFailureIsUnavailable(t *testing.T) {
	svc := accounts.New(downStore{}, accounts.Config{Throttle: memaccounts.NewThrottle(0)})
	if _, err := svc.List(t.Context()); !errors.Is(err, accounts.ErrStoreUnavailable) || !errors.Is(err, errDown) {
		t.Errorf("List on a down store: %v, want ErrStoreUnavailable wrapping the cause", err)
	}
	if _, err := svc.SessionUserID(t.Context(), "alice"); !errors.Is(err, accounts.ErrStoreUnavailable) {
		t.Errorf("SessionUserID on a down store: %v, want ErrStoreUnavailable", err)
	}
	mem := storeFactories[0].new(t)
	svc = accounts.New(mem, accounts.Config{Throttle: memaccounts.NewThrottle(0)})
	if _, err := svc.Get(t.Context(), "nobody"); !errors.Is(err, accounts.ErrNoSuchUser) || errors.Is(err, accounts.ErrStoreUnavailable) {
		t.Errorf("Get of an unknown user: %v, want ErrNoSuchUser only", err)
	}
}

// TestNewNeedsThrottle: where the failure counters live decides whether
// gateway nodes share one budget per account, so New takes no silent
// per-process default and refuses a Config without a throttle store.
func TestNewNeedsThrottle(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Throttle") {
			t.Fatalf("New without a throttle store: recovered %v, want a panic naming Config.Throttle", r)
		}
	}()
	accounts.New(memaccounts.New(), accounts.Config{RevokeSessions: accounts.NoSessions})
}
