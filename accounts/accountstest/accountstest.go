// Package accountstest is the conformance suite every [accounts.Store] runs.
// A store's test calls [Run] with a factory returning a fresh, empty store:
//
//	func TestStoreConformance(t *testing.T) {
//		accountstest.Run(t, func(t *testing.T) accounts.Store { return memaccounts.New() })
//	}
package accountstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
)

// Factory returns a new, empty store isolated from the others it returned;
// it registers any cleanup with t.Cleanup.
type Factory func(t *testing.T) accounts.Store

// Start is the creation time of the suite's records. It has a sub-second
// part down to the microsecond, which every store must keep.
var Start = time.Date(2026, 11, 28, 9, 0, 0, 123456000, time.UTC)

// Run checks the [accounts.Store] contract.
func Run(t *testing.T, newStore Factory) {
	t.Run("CreateGet", func(t *testing.T) { testCreateGet(t, newStore(t)) })
	t.Run("NamesIgnoreCase", func(t *testing.T) { testNamesIgnoreCase(t, newStore(t)) })
	t.Run("UnicodeNamesFold", func(t *testing.T) { testUnicodeNamesFold(t, newStore(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("UpdateFields", func(t *testing.T) { testUpdateFields(t, newStore(t)) })
	t.Run("UpdateIfPasswordHash", func(t *testing.T) { testUpdateIfPasswordHash(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("NoSharedSlices", func(t *testing.T) { testNoSharedSlices(t, newStore(t)) })
	t.Run("ConcurrentCreate", func(t *testing.T) { testConcurrentCreate(t, newStore(t)) })
	t.Run("DoneContext", func(t *testing.T) { testDoneContext(t, newStore(t)) })
	t.Run("SecondFactorRoundTrip", func(t *testing.T) { testSecondFactorRoundTrip(t, newStore(t)) })
	t.Run("UpdateIfSecondFactor", func(t *testing.T) { testUpdateIfSecondFactor(t, newStore(t)) })
	t.Run("ConcurrentSecondFactorSwap", func(t *testing.T) { testConcurrentSecondFactorSwap(t, newStore(t)) })
	t.Run("PasskeysRoundTrip", func(t *testing.T) { testPasskeysRoundTrip(t, newStore(t)) })
	t.Run("UpdateIfPasskeys", func(t *testing.T) { testUpdateIfPasskeys(t, newStore(t)) })
	t.Run("ConcurrentPasskeysSwap", func(t *testing.T) { testConcurrentPasskeysSwap(t, newStore(t)) })
}

func record(name string, roles ...string) accounts.Record {
	return accounts.Record{
		User: accounts.User{
			Name: name, Email: name + "@example.com", Roles: roles,
			CreatedAt: Start, PasswordChangedAt: Start.Add(time.Minute),
		},
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$hash-of-" + name,
	}
}

func mustCreate(t *testing.T, s accounts.Store, recs ...accounts.Record) {
	t.Helper()
	for _, rec := range recs {
		if err := s.Create(t.Context(), rec); err != nil {
			t.Fatalf("Create(%q): %v", rec.Name, err)
		}
	}
}

func mustGet(t *testing.T, s accounts.Store, name string) accounts.Record {
	t.Helper()
	rec, err := s.Get(t.Context(), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	return rec
}

func sameUser(a, b accounts.User) bool {
	return a.Name == b.Name && a.Email == b.Email && slices.Equal(a.Roles, b.Roles) &&
		a.Disabled == b.Disabled && a.CreatedAt.Equal(b.CreatedAt) && a.PasswordChangedAt.Equal(b.PasswordChangedAt)
}

func checkRecord(t *testing.T, got, want accounts.Record) {
	t.Helper()
	if !sameUser(got.User, want.User) || got.PasswordHash != want.PasswordHash || got.SecondFactor != want.SecondFactor ||
		got.Passkeys != want.Passkeys {
		t.Errorf("record = %+v\nwant     %+v", got, want)
	}
}

func testCreateGet(t *testing.T, s accounts.Store) {
	alice := record("alice", "admin", "ops")
	alice.Disabled = true
	mustCreate(t, s, alice, record("bob"))
	checkRecord(t, mustGet(t, s, "alice"), alice)
	got := mustGet(t, s, "bob")
	checkRecord(t, got, record("bob"))
	if len(got.Roles) != 0 {
		t.Errorf("bob has roles %q, want none", got.Roles)
	}
}

func testNamesIgnoreCase(t *testing.T, s accounts.Store) {
	mustCreate(t, s, record("Alice.Smith"))
	if err := s.Create(t.Context(), record("alice.smith")); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("Create(alice.smith) after Alice.Smith: %v, want ErrUserExists", err)
	}
	if err := s.Create(t.Context(), record("Alice.Smith")); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("Create(Alice.Smith) twice: %v, want ErrUserExists", err)
	}
	for _, name := range []string{"Alice.Smith", "alice.smith", "ALICE.SMITH"} {
		if got := mustGet(t, s, name); got.Name != "Alice.Smith" {
			t.Errorf("Get(%q).Name = %q, want the stored case Alice.Smith", name, got.Name)
		}
	}
	u, err := s.Update(t.Context(), "ALICE.smith", accounts.Change{Email: ptr("new@example.com")})
	if err != nil || u.Name != "Alice.Smith" || u.Email != "new@example.com" {
		t.Errorf("Update(ALICE.smith) = %+v, %v", u, err)
	}
	if err := s.Delete(t.Context(), "alice.SMITH"); err != nil {
		t.Errorf("Delete(alice.SMITH): %v", err)
	}
	if _, err := s.Get(t.Context(), "Alice.Smith"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get after Delete: %v, want ErrNoSuchUser", err)
	}
}

// testUnicodeNamesFold: names are keyed by accounts.FoldName, Unicode
// case and normalisation included, and keep the form they were created
// with.
func testUnicodeNamesFold(t *testing.T, s accounts.Store) {
	mustCreate(t, s, record("Zoë"), record("Ἀριστοτέλης"))
	for _, name := range []string{"Zoë", "zoë", "ZOË", "zoe\u0308", "ZOE\u0308"} {
		if got := mustGet(t, s, name); got.Name != "Zoë" {
			t.Errorf("Get(%q).Name = %q, want the stored form Zoë", name, got.Name)
		}
	}
	if err := s.Create(t.Context(), record("ZOË")); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("Create(ZOË) after Zoë: %v, want ErrUserExists", err)
	}
	if got := mustGet(t, s, "ἀριστοτέλης"); got.Name != "Ἀριστοτέλης" {
		t.Errorf("Get(ἀριστοτέλης).Name = %q", got.Name)
	}
	if u, err := s.Update(t.Context(), "ZOË", accounts.Change{Email: ptr("zoe@example.com")}); err != nil || u.Name != "Zoë" {
		t.Errorf("Update(ZOË) = %+v, %v", u, err)
	}
	// An ASCII name is still the same user as its case variants, and not
	// the same as a Unicode name it resembles.
	mustCreate(t, s, record("zoe"))
	if got := mustGet(t, s, "ZOE"); got.Name != "zoe" {
		t.Errorf("Get(ZOE).Name = %q, want zoe", got.Name)
	}
	users, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.Name)
	}
	if want := []string{"zoe", "Zoë", "Ἀριστοτέλης"}; !slices.Equal(got, want) {
		t.Errorf("List order %q, want %q (by folded name)", got, want)
	}
	if err := s.Delete(t.Context(), "zoe\u0308"); err != nil {
		t.Errorf("Delete(decomposed zoë): %v", err)
	}
	if _, err := s.Get(t.Context(), "Zoë"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get after Delete: %v, want ErrNoSuchUser", err)
	}
	if got := mustGet(t, s, "zoe"); got.Name != "zoe" {
		t.Errorf("deleting zoë touched zoe: %+v", got)
	}
}

func testMissing(t *testing.T, s accounts.Store) {
	mustCreate(t, s, record("alice"))
	ctx := t.Context()
	if _, err := s.Get(ctx, "bob"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get(bob): %v, want ErrNoSuchUser", err)
	}
	if _, err := s.Update(ctx, "bob", accounts.Change{Disabled: ptr(true)}); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Update(bob): %v, want ErrNoSuchUser", err)
	}
	if _, err := s.Update(ctx, "bob", accounts.Change{}); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Update(bob) with no change: %v, want ErrNoSuchUser", err)
	}
	if _, err := s.Update(ctx, "bob", accounts.Change{PasswordHash: ptr("x"), IfPasswordHash: "y"}); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Update(bob) with IfPasswordHash: %v, want ErrNoSuchUser", err)
	}
	if err := s.Delete(ctx, "bob"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Delete(bob): %v, want ErrNoSuchUser", err)
	}
}

func testUpdateFields(t *testing.T, s accounts.Store) {
	want := record("alice", "viewer")
	mustCreate(t, s, want, record("bob", "viewer"))
	later := Start.Add(time.Hour + 987654*time.Microsecond)
	steps := []struct {
		name   string
		change accounts.Change
		apply  func(*accounts.Record)
	}{
		{"nothing", accounts.Change{}, func(*accounts.Record) {}},
		{"password", accounts.Change{PasswordHash: ptr("new-hash"), PasswordChangedAt: &later}, func(r *accounts.Record) {
			r.PasswordHash, r.PasswordChangedAt = "new-hash", later
		}},
		{"roles", accounts.Change{Roles: &[]string{"admin", "ops"}}, func(r *accounts.Record) { r.Roles = []string{"admin", "ops"} }},
		{"no roles", accounts.Change{Roles: &[]string{}}, func(r *accounts.Record) { r.Roles = nil }},
		{"email", accounts.Change{Email: ptr("")}, func(r *accounts.Record) { r.Email = "" }},
		{"disable", accounts.Change{Disabled: ptr(true)}, func(r *accounts.Record) { r.Disabled = true }},
		{"enable", accounts.Change{Disabled: ptr(false)}, func(r *accounts.Record) { r.Disabled = false }},
		{"several", accounts.Change{Email: ptr("a@example.org"), Disabled: ptr(true), Roles: &[]string{"x"}}, func(r *accounts.Record) {
			r.Email, r.Disabled, r.Roles = "a@example.org", true, []string{"x"}
		}},
	}
	for _, step := range steps {
		step.apply(&want)
		u, err := s.Update(t.Context(), "alice", step.change)
		if err != nil {
			t.Fatalf("Update %s: %v", step.name, err)
		}
		if !sameUser(u, want.User) {
			t.Errorf("Update %s returned %+v, want %+v", step.name, u, want.User)
		}
		checkRecord(t, mustGet(t, s, "alice"), want)
	}
	// The other user is untouched.
	checkRecord(t, mustGet(t, s, "bob"), record("bob", "viewer"))
}

func testUpdateIfPasswordHash(t *testing.T, s accounts.Store) {
	rec := record("alice")
	mustCreate(t, s, rec)
	_, err := s.Update(t.Context(), "alice", accounts.Change{PasswordHash: ptr("rehash"), IfPasswordHash: "stale"})
	if !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with a stale IfPasswordHash: %v, want ErrConflict", err)
	}
	checkRecord(t, mustGet(t, s, "alice"), rec)
	if _, err := s.Update(t.Context(), "alice", accounts.Change{PasswordHash: ptr("rehash"), IfPasswordHash: rec.PasswordHash}); err != nil {
		t.Fatalf("Update with the current IfPasswordHash: %v", err)
	}
	if got := mustGet(t, s, "alice").PasswordHash; got != "rehash" {
		t.Errorf("hash after conditional update = %q, want rehash", got)
	}
}

func testDelete(t *testing.T, s accounts.Store) {
	mustCreate(t, s, record("alice"), record("bob"))
	if err := s.Delete(t.Context(), "alice"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(t.Context(), "alice"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("Get after Delete: %v, want ErrNoSuchUser", err)
	}
	if err := s.Delete(t.Context(), "alice"); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("second Delete: %v, want ErrNoSuchUser", err)
	}
	mustGet(t, s, "bob")
	// The name is free again.
	mustCreate(t, s, record("alice"))
}

func testList(t *testing.T, s accounts.Store) {
	users, err := s.List(t.Context())
	if err != nil || len(users) != 0 {
		t.Fatalf("List on an empty store = %v, %v", users, err)
	}
	names := []string{"carol", "Bob", "alice", "_svc", "Dave-2", "dave-1"}
	for _, n := range names {
		mustCreate(t, s, record(n, "r-"+n))
	}
	users, err = s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.Name)
		if want := record(u.Name, "r-"+u.Name).User; !sameUser(u, want) {
			t.Errorf("List entry %+v, want %+v", u, want)
		}
	}
	want := []string{"_svc", "alice", "Bob", "carol", "dave-1", "Dave-2"}
	if !slices.Equal(got, want) {
		t.Errorf("List order %q, want %q (by name, ignoring case)", got, want)
	}
}

func testNoSharedSlices(t *testing.T, s accounts.Store) {
	rec := record("alice", "admin")
	mustCreate(t, s, rec)
	rec.Roles[0] = "changed-after-create"
	got := mustGet(t, s, "alice")
	if got.Roles[0] != "admin" {
		t.Fatalf("store shares the Create slice: roles %q", got.Roles)
	}
	got.Roles[0] = "changed-after-get"
	roles := []string{"ops"}
	if _, err := s.Update(t.Context(), "alice", accounts.Change{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	roles[0] = "changed-after-update"
	users, _ := s.List(t.Context())
	users[0].Roles[0] = "changed-after-list"
	if got := mustGet(t, s, "alice").Roles; !slices.Equal(got, []string{"ops"}) {
		t.Errorf("roles %q, want [ops]: the store shares a slice with its caller", got)
	}
}

func testConcurrentCreate(t *testing.T, s accounts.Store) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			rec := record(fmt.Sprintf("Same%c", "nN"[i%2]))
			rec.Email = fmt.Sprintf("writer%d@example.com", i)
			errs[i] = s.Create(t.Context(), rec)
		})
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, accounts.ErrUserExists):
			t.Errorf("concurrent Create: %v", err)
		}
	}
	if created != 1 {
		t.Errorf("%d concurrent Creates of one name succeeded, want 1", created)
	}
}

func testDoneContext(t *testing.T, s accounts.Store) {
	mustCreate(t, s, record("alice"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", op, err)
		}
	}
	check("Create", s.Create(ctx, record("bob")))
	_, err := s.Get(ctx, "alice")
	check("Get", err)
	_, err = s.Update(ctx, "alice", accounts.Change{Disabled: ptr(true)})
	check("Update", err)
	check("Delete", s.Delete(ctx, "alice"))
	_, err = s.List(ctx)
	check("List", err)
	// Nothing happened.
	checkRecord(t, mustGet(t, s, "alice"), record("alice"))
}

func ptr[T any](v T) *T { return &v }

// A second factor as the service encodes it: opaque to the store, with
// characters a careless encoding would mangle.
const factorA, factorB = `{"v":1,"secret":"v1.k1.AbC-_x","step":57,"recovery":["aa","bb"]}`, `{"v":1,"secret":"v1.k1.ZyX","step":58,"recovery":["bb"]}`

func testSecondFactorRoundTrip(t *testing.T, s accounts.Store) {
	alice := record("alice", "ops")
	alice.SecondFactor = factorA
	mustCreate(t, s, alice, record("bob"))
	checkRecord(t, mustGet(t, s, "ALICE"), alice)
	checkRecord(t, mustGet(t, s, "bob"), record("bob")) // none: ""

	// Other changes keep it.
	if _, err := s.Update(t.Context(), "alice", accounts.Change{Email: ptr("a@example.org"), PasswordHash: ptr("h2")}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	alice.Email, alice.PasswordHash = "a@example.org", "h2"
	checkRecord(t, mustGet(t, s, "alice"), alice)

	if _, err := s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr(factorB)}); err != nil {
		t.Fatalf("Update(SecondFactor): %v", err)
	}
	alice.SecondFactor = factorB
	checkRecord(t, mustGet(t, s, "alice"), alice)

	if _, err := s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr("")}); err != nil {
		t.Fatalf("Update(no SecondFactor): %v", err)
	}
	alice.SecondFactor = ""
	checkRecord(t, mustGet(t, s, "alice"), alice)
	checkRecord(t, mustGet(t, s, "bob"), record("bob"))
}

func testUpdateIfSecondFactor(t *testing.T, s accounts.Store) {
	rec := record("alice")
	mustCreate(t, s, rec)
	// No factor yet: the condition "" holds, any other does not.
	if _, err := s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr(factorB), IfSecondFactor: ptr(factorA)}); !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with IfSecondFactor on a user without one: %v, want ErrConflict", err)
	}
	checkRecord(t, mustGet(t, s, "alice"), rec)
	if _, err := s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr(factorA), IfSecondFactor: ptr("")}); err != nil {
		t.Fatalf("Update with IfSecondFactor \"\": %v", err)
	}
	rec.SecondFactor = factorA
	checkRecord(t, mustGet(t, s, "alice"), rec)

	// A stale value conflicts and changes nothing, not even other fields.
	_, err := s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr(factorB), Email: ptr("x@example.org"), IfSecondFactor: ptr("stale")})
	if !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with a stale IfSecondFactor: %v, want ErrConflict", err)
	}
	checkRecord(t, mustGet(t, s, "alice"), rec)
	// Both conditions must hold.
	_, err = s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr(factorB), IfSecondFactor: ptr(factorA), IfPasswordHash: "stale"})
	if !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with a current IfSecondFactor and a stale IfPasswordHash: %v, want ErrConflict", err)
	}
	if _, err := s.Update(t.Context(), "alice", accounts.Change{SecondFactor: ptr(factorB), IfSecondFactor: ptr(factorA)}); err != nil {
		t.Fatalf("Update with the current IfSecondFactor: %v", err)
	}
	rec.SecondFactor = factorB
	checkRecord(t, mustGet(t, s, "alice"), rec)

	if _, err := s.Update(t.Context(), "nobody", accounts.Change{SecondFactor: ptr(""), IfSecondFactor: ptr(factorA)}); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("conditional Update of a missing user: %v, want ErrNoSuchUser", err)
	}
}

// testConcurrentSecondFactorSwap races writers that all read the same
// factor and swap it for their own: exactly one may win, which is what
// makes a TOTP step or a recovery code single use.
func testConcurrentSecondFactorSwap(t *testing.T, s accounts.Store) {
	rec := record("alice")
	rec.SecondFactor = factorA
	mustCreate(t, s, rec)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Update(t.Context(), "alice", accounts.Change{
				SecondFactor: ptr(fmt.Sprintf("writer %d", i)), IfSecondFactor: ptr(factorA),
			})
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("writers %d and %d both swapped the same second factor", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, accounts.ErrConflict):
			t.Errorf("concurrent swap: %v", err)
		}
	}
	if won < 0 {
		t.Fatal("no writer swapped the second factor")
	}
	if got, want := mustGet(t, s, "alice").SecondFactor, fmt.Sprintf("writer %d", won); got != want {
		t.Errorf("second factor = %q, want the winner's %q", got, want)
	}
}

// Passkeys as the service encodes them: opaque to the store, with
// characters a careless encoding would mangle.
const passkeysA, passkeysB = `{"v":1,"keys":[{"id":"AbC-_x","count":7,"name":"Zoë's \"key\""}]}`, `{"v":1,"keys":[{"id":"AbC-_x","count":8}]}`

func testPasskeysRoundTrip(t *testing.T, s accounts.Store) {
	alice := record("alice", "ops")
	alice.Passkeys = passkeysA
	alice.SecondFactor = factorA
	mustCreate(t, s, alice, record("bob"))
	checkRecord(t, mustGet(t, s, "ALICE"), alice)
	checkRecord(t, mustGet(t, s, "bob"), record("bob")) // none: ""

	// Other changes keep them, the second factor's included.
	if _, err := s.Update(t.Context(), "alice", accounts.Change{Email: ptr("a@example.org"), SecondFactor: ptr(factorB)}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	alice.Email, alice.SecondFactor = "a@example.org", factorB
	checkRecord(t, mustGet(t, s, "alice"), alice)

	if _, err := s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr(passkeysB)}); err != nil {
		t.Fatalf("Update(Passkeys): %v", err)
	}
	alice.Passkeys = passkeysB
	checkRecord(t, mustGet(t, s, "alice"), alice)

	if _, err := s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr("")}); err != nil {
		t.Fatalf("Update(no Passkeys): %v", err)
	}
	alice.Passkeys = ""
	checkRecord(t, mustGet(t, s, "alice"), alice)
	checkRecord(t, mustGet(t, s, "bob"), record("bob"))
}

func testUpdateIfPasskeys(t *testing.T, s accounts.Store) {
	rec := record("alice")
	mustCreate(t, s, rec)
	if _, err := s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr(passkeysB), IfPasskeys: ptr(passkeysA)}); !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with IfPasskeys on a user without any: %v, want ErrConflict", err)
	}
	checkRecord(t, mustGet(t, s, "alice"), rec)
	if _, err := s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr(passkeysA), IfPasskeys: ptr("")}); err != nil {
		t.Fatalf("Update with IfPasskeys \"\": %v", err)
	}
	rec.Passkeys = passkeysA
	checkRecord(t, mustGet(t, s, "alice"), rec)

	// A stale value conflicts and changes nothing, not even other fields.
	_, err := s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr(passkeysB), Email: ptr("x@example.org"), IfPasskeys: ptr("stale")})
	if !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with a stale IfPasskeys: %v, want ErrConflict", err)
	}
	checkRecord(t, mustGet(t, s, "alice"), rec)
	// Every condition must hold.
	_, err = s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr(passkeysB), IfPasskeys: ptr(passkeysA), IfSecondFactor: ptr(factorA)})
	if !errors.Is(err, accounts.ErrConflict) {
		t.Fatalf("Update with a current IfPasskeys and a stale IfSecondFactor: %v, want ErrConflict", err)
	}
	if _, err := s.Update(t.Context(), "alice", accounts.Change{Passkeys: ptr(passkeysB), IfPasskeys: ptr(passkeysA), IfSecondFactor: ptr("")}); err != nil {
		t.Fatalf("Update with the current IfPasskeys: %v", err)
	}
	rec.Passkeys = passkeysB
	checkRecord(t, mustGet(t, s, "alice"), rec)

	if _, err := s.Update(t.Context(), "nobody", accounts.Change{Passkeys: ptr(""), IfPasskeys: ptr(passkeysA)}); !errors.Is(err, accounts.ErrNoSuchUser) {
		t.Errorf("conditional Update of a missing user: %v, want ErrNoSuchUser", err)
	}
}

// testConcurrentPasskeysSwap races writers that all read the same
// passkeys and swap them for their own: exactly one may win, which is
// what keeps a sign count from going back when two sign-ins race.
func testConcurrentPasskeysSwap(t *testing.T, s accounts.Store) {
	rec := record("alice")
	rec.Passkeys = passkeysA
	mustCreate(t, s, rec)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Update(t.Context(), "alice", accounts.Change{
				Passkeys: ptr(fmt.Sprintf("writer %d", i)), IfPasskeys: ptr(passkeysA),
			})
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Errorf("writers %d and %d both swapped the same passkeys", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, accounts.ErrConflict):
			t.Errorf("concurrent swap: %v", err)
		}
	}
	if won < 0 {
		t.Fatal("no writer swapped the passkeys")
	}
	if got, want := mustGet(t, s, "alice").Passkeys, fmt.Sprintf("writer %d", won); got != want {
		t.Errorf("passkeys = %q, want the winner's %q", got, want)
	}
}
