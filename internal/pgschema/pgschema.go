// Package pgschema is what every migration of a cloakroom PostgreSQL
// schema shares, pgstore's and the accounts tables' (pgaccounts): the
// check of the schema's name, and the advisory lock under which they run
// one after another, on every gateway. CREATE SCHEMA, even with IF NOT
// EXISTS, fails when another transaction creates the same schema at once,
// so the migrations of a schema the stores share must queue behind one
// lock.
package pgschema

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// maxIdentifier is PostgreSQL's identifier limit (NAMEDATALEN-1). A longer
// schema name would be silently truncated, and two stores could share it.
const maxIdentifier = 63

// Quote checks name, a schema's name, and returns it quoted for SQL.
func Quote(name string) (string, error) {
	if len(name) > maxIdentifier || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("invalid PostgreSQL schema name %q", name)
	}
	return pgx.Identifier{name}.Sanitize(), nil
}

// Lock takes, in tx, the advisory lock of the schema name, held until tx
// ends.
func Lock(ctx context.Context, tx pgx.Tx, name string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(name))
	return err
}

// lockKey is the advisory lock key of the schema name, the same on every
// gateway and for every store.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("cloakroom/pgstore migrate "))
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// Prepare begins a migration of the schema name (quoted as Quote returns
// it) in tx: it takes the schema's lock, creates the schema if it is
// missing, and reports whether table, the unquoted name of a table in it,
// exists. It checks before creating, so a role without the CREATE
// privilege can use a schema an administrator migrated.
func Prepare(ctx context.Context, tx pgx.Tx, name, quoted, table string) (tableExists bool, err error) {
	if err := Lock(ctx, tx, name); err != nil {
		return false, err
	}
	var schemaExists bool
	err = tx.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1), to_regclass($2) IS NOT NULL",
		name, quoted+"."+table).Scan(&schemaExists, &tableExists)
	if err != nil || schemaExists {
		return tableExists, err
	}
	_, err = tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoted)
	return false, err
}
