package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"github.com/cloakroom/cloakroom"
)

// The uncached Find, on every request of a store without cache and on
// every miss of one with it, runs on connections the store pins for it,
// through the driver's own prepared statement. database/sql's statement and
// row machinery (a per-call search for a connection holding the statement,
// argument conversion, a Rows with its locks) costs about as much as the
// B-tree lookup itself; here each call reuses its reader's arguments and
// key buffer.

// pinnedReader is one connection held for Find, with the find query
// prepared on it. A reader is used by one call at a time: whoever took it
// from Store.readers.
type pinnedReader struct {
	conn *sql.Conn
	stmt driver.Stmt // on conn's driver connection; nil until prepared

	key  cloakroom.Key
	args [2]driver.NamedValue
	dest [1]driver.Value
}

// errUnexpectedDriver means the driver does not offer the interfaces the
// pinned readers use; the store then finds through database/sql.
var errUnexpectedDriver = errors.New("sqlitestore: driver lacks ConnPrepareContext or StmtQueryContext")

// pinReader prepares the find query on a fresh connection of db.
func pinReader(ctx context.Context, db *sql.DB, query string) (*pinnedReader, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	r := &pinnedReader{conn: conn}
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errUnexpectedDriver
		}
		stmt, err := pc.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		if _, ok := stmt.(driver.StmtQueryContext); !ok {
			stmt.Close()
			return errUnexpectedDriver
		}
		r.stmt = stmt
		return nil
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return r, nil
}

// find runs the find query for key at nowMs.
func (r *pinnedReader) find(key cloakroom.Key, nowMs int64) (cloakroom.Record, bool, error) {
	var rec cloakroom.Record
	var found bool
	err := r.conn.Raw(func(any) error {
		r.key = key
		r.args[0] = driver.NamedValue{Ordinal: 1, Value: r.key[:]}
		r.args[1] = driver.NamedValue{Ordinal: 2, Value: nowMs}
		// Not the caller's context: see findStored.
		rows, err := r.stmt.(driver.StmtQueryContext).QueryContext(context.Background(), r.args[:])
		if err != nil {
			return err
		}
		defer rows.Close()
		switch err := rows.Next(r.dest[:]); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
		v := r.dest[0]
		r.dest[0] = nil
		blob, ok := v.([]byte)
		if !ok {
			return fmt.Errorf("record column holds %T", v)
		}
		if err := rec.UnmarshalBinary(blob); err != nil {
			return err
		}
		found = true
		return nil
	})
	return rec, found, err
}

func (r *pinnedReader) close() error {
	err := r.conn.Raw(func(any) error { return r.stmt.Close() })
	return errors.Join(err, r.conn.Close())
}
