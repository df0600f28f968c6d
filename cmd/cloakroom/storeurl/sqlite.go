package storeurl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/accounts/sqliteaccounts"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

// openSQLite opens the SQLite file holding sessions and users, creating it
// when it is missing and opts.CreateSQLite is set.
func openSQLite(ctx context.Context, loc Location, opts Options) (*Stores, error) {
	path := filepath.Clean(loc.Path)
	if info, err := os.Stat(filepath.Dir(path)); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("%w: sqlite: folder %s does not exist; create it first", ErrInvalidURL, filepath.Dir(path))
	}
	prepare := existingDatabase
	if opts.CreateSQLite {
		prepare = createPrivate
	}
	if err := prepare(path); err != nil {
		return nil, err
	}
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Config{Logger: opts.Logger})
	if err != nil {
		return nil, openError("open", loc, err)
	}
	return database{
		loc:      loc,
		sessions: st,
		close:    st.Close,
		accounts: func() (accounts.Store, error) { return sqliteaccounts.New(ctx, st.DB()) },
		// One node: the failed-login counters can live in its memory.
		throttle: func() (accounts.ThrottleStore, error) { return memaccounts.NewThrottle(0), nil },
	}.open()
}

// createPrivate creates an empty database file readable by its owner only,
// when there is none: it will hold password hashes and session records.
// SQLite gives its journal files the database file's permissions.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case errors.Is(err, fs.ErrExist):
		return existingDatabase(path)
	default:
		return fmt.Errorf("sqlite: %w", err)
	}
}

// existingDatabase checks that path is a file, without creating one.
func existingDatabase(path string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: sqlite: no file %s", ErrNoDatabase, path)
	case err != nil:
		return fmt.Errorf("sqlite: %w", err)
	case info.IsDir():
		return fmt.Errorf("sqlite: %s is a folder, not a database file", path)
	}
	return nil
}
