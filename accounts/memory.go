package accounts

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// MemoryStore is a [Store] in process memory, for tests and tools. Its
// contents vanish when the process exits.
type MemoryStore struct {
	mu    sync.RWMutex
	users map[string]Record // folded name → record
}

// NewMemory returns an empty MemoryStore.
func NewMemory() *MemoryStore {
	return &MemoryStore{users: make(map[string]Record)}
}

// Create implements [Store].
func (s *MemoryStore) Create(ctx context.Context, rec Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	key := foldName(rec.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[key]; ok {
		return fmt.Errorf("%w: %q", ErrUserExists, rec.Name)
	}
	rec.User = rec.User.clone()
	s.users[key] = rec
	return nil
}

// Get implements [Store].
func (s *MemoryStore) Get(ctx context.Context, name string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	s.mu.RLock()
	rec, ok := s.users[foldName(name)]
	s.mu.RUnlock()
	if !ok {
		return Record{}, ErrNoSuchUser
	}
	rec.User = rec.User.clone()
	return rec, nil
}

// Update implements [Store].
func (s *MemoryStore) Update(ctx context.Context, name string, c Change) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	key := foldName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.users[key]
	if !ok {
		return User{}, ErrNoSuchUser
	}
	if c.IfPasswordHash != "" && c.IfPasswordHash != rec.PasswordHash {
		return User{}, ErrConflict
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
	rec.User = rec.User.clone()
	s.users[key] = rec
	return rec.User.clone(), nil
}

// Delete implements [Store].
func (s *MemoryStore) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	key := foldName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[key]; !ok {
		return ErrNoSuchUser
	}
	delete(s.users, key)
	return nil
}

// List implements [Store].
func (s *MemoryStore) List(ctx context.Context) ([]User, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	s.mu.RLock()
	users := make([]User, 0, len(s.users))
	for _, rec := range s.users {
		users = append(users, rec.User.clone())
	}
	s.mu.RUnlock()
	slices.SortFunc(users, func(a, b User) int { return strings.Compare(foldName(a.Name), foldName(b.Name)) })
	return users, nil
}
