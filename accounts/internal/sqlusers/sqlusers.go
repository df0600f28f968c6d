// Package sqlusers holds what the SQL account stores, sqliteaccounts and
// pgaccounts, share above their drivers: how the outcome of a Get's or an
// Update's statement becomes the [accounts.Store] answer, so both stores
// give the same errors.
package sqlusers

import (
	"errors"
	"fmt"

	"github.com/cloakroom/cloakroom/accounts"
)

// Get is the answer of Store.Get. scan reads a user's columns and then its
// password hash and second factor into rec; it fails with noRows, the
// driver's error for a query without a row, when there is no such user.
func Get(noRows error, scan func(rec *accounts.Record) (accounts.User, error)) (accounts.Record, error) {
	var rec accounts.Record
	u, err := scan(&rec)
	switch {
	case errors.Is(err, noRows):
		return accounts.Record{}, accounts.ErrNoSuchUser
	case err != nil:
		return accounts.Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	rec.User = u
	return rec, nil
}

// Updated is the answer of Store.Update for c, given what its UPDATE ...
// RETURNING statement gave: u, or err, noRows (the driver's error for no
// row) when no row matched. Without a condition (c.IfPasswordHash,
// c.IfSecondFactor, c.IfPasskeys) that means the user is gone; with one, exists, asked
// then, tells a gone user from a changed value (ErrConflict).
func Updated(u accounts.User, err, noRows error, c accounts.Change, exists func() (bool, error)) (accounts.User, error) {
	switch {
	case err == nil:
		return u, nil
	case !errors.Is(err, noRows):
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	case c.IfPasswordHash == "" && c.IfSecondFactor == nil && c.IfPasskeys == nil:
		return accounts.User{}, accounts.ErrNoSuchUser
	}
	found, err := exists()
	switch {
	case err != nil:
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	case !found:
		return accounts.User{}, accounts.ErrNoSuchUser
	}
	return accounts.User{}, accounts.ErrConflict
}
