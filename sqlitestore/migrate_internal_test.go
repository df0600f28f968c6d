package sqlitestore

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/storetest"
)

// formatOne returns rec as a record of epoch 0 was encoded before records
// carried an epoch: format 1, without the epoch after the flag byte.
func formatOne(t *testing.T, rec cloakroom.Record) []byte {
	t.Helper()
	const epochAt = 1 + 32 + 6*8 + 1
	b, err := rec.MarshalBinary()
	if err != nil || rec.Epoch != 0 || b[epochAt] != 0 {
		t.Fatalf("cannot derive a format-1 record: %v", err)
	}
	old := append([]byte{1}, b[1:epochAt]...)
	return append(old, b[epochAt+1:]...)
}

// TestUpgradeKeepsSessions opens a file written by the schema before the
// epoch (version 1, format-1 records): its sessions are found, at epoch 0,
// can be updated, and end with the first epoch bump.
func TestUpgradeKeepsSessions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	user, anon := storetest.NewRecord("alice", time.Now()), storetest.NewRecord("", time.Now())
	for _, q := range []string{
		`CREATE TABLE schema_version (component TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL) STRICT, WITHOUT ROWID`,
		migrations[0],
		`INSERT INTO schema_version VALUES ('` + schemaComponent + `', 1)`,
	} {
		if _, err := db.ExecContext(ctx, withPrefix("", q)); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range []cloakroom.Record{user, anon} {
		var userID any
		if rec.UserID != "" {
			userID = rec.UserID
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO sessions (key, user_id, handle, generation, version, expiry_unix_ms, record) VALUES (?, ?, ?, 0, 1, ?, ?)`,
			rec.Key[:], userID, rec.Handle, rec.Expiry().UnixMilli(), formatOne(t, rec)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e, err := s.Epoch(ctx); err != nil || e != 0 {
		t.Fatalf("Epoch after the upgrade = %d, %v; want 0", e, err)
	}
	for _, rec := range []cloakroom.Record{user, anon} {
		got, ok, err := s.Find(ctx, rec.Key)
		if err != nil || !ok || got.Epoch != 0 || got.Handle != rec.Handle || !bytes.Equal(got.Data, rec.Data) {
			t.Fatalf("Find of a session stored before the upgrade = %+v, %v, %v", got, ok, err)
		}
	}
	if list, err := s.List(ctx, user.UserID); err != nil || len(list) != 1 {
		t.Fatalf("List after the upgrade = %d sessions, %v; want 1", len(list), err)
	}
	user.Version = 2
	if err := s.Commit(ctx, user); err != nil {
		t.Fatalf("update of a session stored before the upgrade: %v", err)
	}
	if _, err := s.BumpEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []cloakroom.Record{user, anon} {
		if _, ok, err := s.Find(ctx, rec.Key); err != nil || ok {
			t.Fatalf("Find after the epoch bump: found=%v err=%v; want not found", ok, err)
		}
	}
}
