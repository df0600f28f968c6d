// Package storerules holds the rules the session stores apply alike to
// the records they keep, so that one definition serves them all: the order
// a user's sessions are listed in, and what the SQL stores' columns hold.
package storerules

import (
	"fmt"
	"math"
	"strings"

	"github.com/cloakroom/cloakroom"
)

// ByCreation orders a user's sessions as the stores list them: oldest
// first and, for sessions created at the same instant, by Handle.
func ByCreation(a, b cloakroom.Record) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.Handle, b.Handle)
}

// SQLBlob checks that rec's counters fit the SQL stores' columns, signed
// 64-bit integers, with a version of at least 1, and returns the binary
// form of rec those stores keep.
func SQLBlob(rec cloakroom.Record) ([]byte, error) {
	if rec.Version == 0 || rec.Version > math.MaxInt64 || rec.Generation > math.MaxInt64 || rec.Epoch > math.MaxInt64 {
		return nil, fmt.Errorf("version %d, generation %d or epoch %d out of range", rec.Version, rec.Generation, rec.Epoch)
	}
	return rec.MarshalBinary()
}

// CheckSQLAux is SQLBlob's check for an auxiliary record: its version and
// epoch fit the SQL stores' columns, and the version is at least 1.
func CheckSQLAux(rec cloakroom.AuxRecord) error {
	if rec.Version == 0 || rec.Version > math.MaxInt64 || rec.Epoch > math.MaxInt64 {
		return fmt.Errorf("version %d or epoch %d out of range", rec.Version, rec.Epoch)
	}
	return nil
}
