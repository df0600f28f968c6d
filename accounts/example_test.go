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
// Authenticate, and disabling a user ends their sessions.
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

	// A login handler: u.Name is what Session.Login takes.
	u, err := users.Authenticate(ctx, "Alice", "correct horse battery staple", "192.0.2.1")
	fmt.Println(u.Name, u.Roles, err)

	_, err = users.Authenticate(ctx, "alice", "wrong password", "192.0.2.1")
	fmt.Println(err)
	_, err = users.Authenticate(ctx, "mallory", "wrong password", "192.0.2.1")
	fmt.Println(err)

	// Validation errors say what to fix.
	err = users.Add(ctx, "bob", "bob", nil, "")
	fmt.Println(errors.Is(err, accounts.ErrInvalidInput), err)

	// Disabling ends alice's sessions and refuses her password.
	if err := users.Disable(ctx, "alice"); err != nil {
		panic(err)
	}
	_, err = users.Authenticate(ctx, "alice", "correct horse battery staple", "192.0.2.1")
	fmt.Println(err)

	// Output:
	// alice [admin] <nil>
	// accounts: invalid user name or password
	// accounts: invalid user name or password
	// true accounts: invalid input: password has 3 characters, at least 8 needed
	// accounts: invalid user name or password
}
