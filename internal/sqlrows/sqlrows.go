// Package sqlrows reads query results the same way for database/sql
// (*sql.Rows) and pgx (pgx.Rows), so the SQL stores share one loop for
// "the row, if any" and "every row" instead of each writing its own.
package sqlrows

// Rows is what the helpers need of a result: both *sql.Rows and pgx.Rows
// have it. Closing stays with the caller, whose Close signatures differ.
type Rows interface {
	Next() bool
	Err() error
}

// First scans the first row of rows with scan and reports false when there
// is none. It then reads rows to the end, so that an error the query ends
// with is returned too: pgx reports one only once the result is read.
func First[R Rows, T any](rows R, scan func(R) (T, error)) (T, bool, error) {
	var zero T
	if !rows.Next() {
		return zero, false, rows.Err()
	}
	v, err := scan(rows)
	if err != nil {
		return zero, false, err
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return zero, false, err
	}
	return v, true, nil
}

// All scans every row of rows with scan, in order. It returns nil when
// there is no row, as append builds it.
func All[R Rows, T any](rows R, scan func(R) (T, error)) ([]T, error) {
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
