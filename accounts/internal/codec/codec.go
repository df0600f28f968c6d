// Package codec holds the column encodings the accounts backends share, so
// the SQLite, PostgreSQL and Redis stores write times and roles alike.
package codec

import (
	"encoding/json"
	"fmt"
	"time"
)

// UnixNano encodes t as Unix nanoseconds; the zero Time, which has no Unix
// time in int64 nanoseconds, becomes 0.
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNano is the inverse of UnixNano, in UTC.
func FromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// EncodeRoles encodes roles as a JSON array, never null.
func EncodeRoles(roles []string) (string, error) {
	b, err := json.Marshal(NonNilRoles(roles))
	if err != nil {
		return "", fmt.Errorf("accounts: encode roles: %w", err)
	}
	return string(b), nil
}

// NonNilRoles turns nil into an empty list: stores return [] for no roles,
// and drivers would send a nil slice as NULL.
func NonNilRoles(roles []string) []string {
	if roles == nil {
		return []string{}
	}
	return roles
}
