package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/memstore"
)

// The gateway wires accounts to the session manager: logins go through
// Login, and disabling a user ends their sessions.
func Example() {
	ctx := context.Background()
	sessions := memstore.New(memstore.Config{})
	defer sessions.Close()
	manager, err := cloakroom.New(cloakroom.Config{Store: sessions, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}

	// In the gateway the store is sqliteaccounts.New(ctx, sqlitestore.DB()).
	users := accounts.New(memaccounts.New(), accounts.Config{
		RevokeSessions: manager.RevokeUser,
		Throttle:       memaccounts.NewThrottle(0), // one node: counters in memory
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err := users.Add(ctx, "alice", "correct horse battery staple", []string{"admin"}, "alice@example.com"); err != nil {
		panic(err)
	}

	// A login handler: res.User.Name is what Session.Login takes, and
	// res.Devices goes into the browser's device cookie.
	login := func(name, password string) (accounts.LoginResult, error) {
		return users.Login(ctx, accounts.LoginAttempt{Name: name, Password: password, ClientIP: "192.0.2.1"})
	}
	res, err := login("Alice", "correct horse battery staple")
	fmt.Println(res.User.Name, res.User.Roles, err)

	_, err = login("alice", "wrong password")
	fmt.Println(err)
	_, err = login("mallory", "wrong password")
	fmt.Println(err)

	// Validation errors say what to fix.
	err = users.Add(ctx, "bob", "bob", nil, "")
	fmt.Println(errors.Is(err, accounts.ErrInvalidInput), err)

	// Disabling ends alice's sessions and refuses her password.
	if err := users.Disable(ctx, "alice"); err != nil {
		panic(err)
	}
	_, err = login("alice", "correct horse battery staple")
	fmt.Println(err)

	// Output:
	// alice [admin] <nil>
	// accounts: invalid user name or password
	// accounts: invalid user name or password
	// true password has 3 characters, at least 8 needed
	// accounts: invalid user name or password
}

// An administrator's reset after a lost phone removes every factor but
// the password, passkeys included, and says what it removed.
func ExampleService_ResetFactors() {
	ctx := context.Background()
	users := accounts.New(memaccounts.New(), accounts.Config{
		RevokeSessions: accounts.NoSessions,
		Throttle:       memaccounts.NewThrottle(0),
		Logger:         slog.New(slog.DiscardHandler),
		Passkeys:       accounts.PasskeyConfig{RPID: "example.com", Origins: []string{"https://login.example.com"}},
	})
	if err := users.Add(ctx, "alice", "correct horse battery staple", nil, ""); err != nil {
		panic(err)
	}
	// Without a factor, nothing changes.
	removed, err := users.ResetFactors(ctx, "alice")
	fmt.Println(removed.Any(), removed.TOTP, removed.Passkeys, err)
	// Nor does the passkey step after the password start: alice has none.
	_, err = users.BeginPasskeySecondFactor(ctx, "alice")
	fmt.Println(err)

	// Output:
	// false false 0 <nil>
	// accounts: no such passkey
}
