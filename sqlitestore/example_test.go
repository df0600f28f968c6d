package sqlitestore_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

func Example() {
	dir, err := os.MkdirTemp("", "sqlitestore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	store, err := sqlitestore.Open(ctx, filepath.Join(dir, "sessions.db"), sqlitestore.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// The store is keyed by the SHA-256 of the session token, never the
	// token itself.
	now := time.Now()
	rec := cloakroom.Record{
		Key:              sha256.Sum256([]byte("token from the session cookie")),
		Handle:           "device-1",
		UserID:           "alice",
		Version:          1,
		CreatedAt:        now,
		LastSeen:         now,
		IdleTimeout:      30 * time.Minute,
		AbsoluteDeadline: now.Add(12 * time.Hour),
		Data:             []byte(`{"theme":"dark"}`),
	}
	if err := store.Commit(ctx, rec); err != nil {
		log.Fatal(err)
	}

	got, found, err := store.Find(ctx, rec.Key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(found, got.UserID, string(got.Data))

	// Logging alice out everywhere revokes the session at once.
	if _, err := store.BumpGeneration(ctx, "alice"); err != nil {
		log.Fatal(err)
	}
	_, found, err = store.Find(ctx, rec.Key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after logout everywhere:", found)
	// Output:
	// true alice {"theme":"dark"}
	// after logout everywhere: false
}
