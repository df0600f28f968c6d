// Package memaccounts is an [accounts.Store] in process memory, for tests,
// demos and tools: the counterpart of memstore for user accounts. Its
// contents vanish when the process exits; a gateway keeps its users in the
// database of its session store (sqliteaccounts, pgaccounts,
// redisaccounts).
package memaccounts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/internal/codec"
)

// Store is an [accounts.Store] in process memory.
type Store struct {
	mu    sync.RWMutex
	users map[string]accounts.Record // folded name → record
}

// New returns an empty Store.
func New() *Store {
	return &Store{users: make(map[string]accounts.Record)}
}

// cloneUser returns u with its own Roles slice, never nil, so callers never
// share a slice with the store.
func cloneUser(u accounts.User) accounts.User {
	u.Roles = codec.NonNilRoles(slices.Clone(u.Roles))
	return u
}

// Create implements [accounts.Store].
func (s *Store) Create(ctx context.Context, rec accounts.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	key := accounts.FoldName(rec.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[key]; ok {
		return fmt.Errorf("%w: %q", accounts.ErrUserExists, rec.Name)
	}
	rec.User = cloneUser(rec.User)
	s.users[key] = rec
	return nil
}

// Get implements [accounts.Store].
func (s *Store) Get(ctx context.Context, name string) (accounts.Record, error) {
	if err := ctx.Err(); err != nil {
		return accounts.Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	s.mu.RLock()
	rec, ok := s.users[accounts.FoldName(name)]
	s.mu.RUnlock()
	if !ok {
		return accounts.Record{}, accounts.ErrNoSuchUser
	}
	rec.User = cloneUser(rec.User)
	return rec, nil
}

// Update implements [accounts.Store].
func (s *Store) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	if err := ctx.Err(); err != nil {
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	key := accounts.FoldName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.users[key]
	if !ok {
		return accounts.User{}, accounts.ErrNoSuchUser
	}
	if c.IfPasswordHash != "" && c.IfPasswordHash != rec.PasswordHash ||
		c.IfSecondFactor != nil && *c.IfSecondFactor != rec.SecondFactor ||
		c.IfPasskeys != nil && *c.IfPasskeys != rec.Passkeys {
		return accounts.User{}, accounts.ErrConflict
	}
	if c.SecondFactor != nil {
		rec.SecondFactor = *c.SecondFactor
	}
	if c.Passkeys != nil {
		rec.Passkeys = *c.Passkeys
	}
	if c.PasswordHash != nil {
		rec.PasswordHash = *c.PasswordHash
	}
	if c.PasswordChangedAt != nil {
		rec.PasswordChangedAt = *c.PasswordChangedAt
	}
	if c.Roles != nil {
		rec.Roles = slices.Clone(*c.Roles)
	}
	if c.Email != nil {
		rec.Email = *c.Email
	}
	if c.Disabled != nil {
		rec.Disabled = *c.Disabled
	}
	rec.User = cloneUser(rec.User)
	s.users[key] = rec
	return cloneUser(rec.User), nil
}

// Delete implements [accounts.Store].
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	key := accounts.FoldName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[key]; !ok {
		return accounts.ErrNoSuchUser
	}
	delete(s.users, key)
	return nil
}

// List implements [accounts.Store].
func (s *Store) List(ctx context.Context) ([]accounts.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	s.mu.RLock()
	users := make([]accounts.User, 0, len(s.users))
	for _, rec := range s.users {
		users = append(users, cloneUser(rec.User))
	}
	s.mu.RUnlock()
	slices.SortFunc(users, func(a, b accounts.User) int {
		return strings.Compare(accounts.FoldName(a.Name), accounts.FoldName(b.Name))
	})
	return users, nil
}
