package pgstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/pgstore"
)

func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// Every gateway runs the same New; the first one migrates the schema.
	store, err := pgstore.New(ctx, pool, pgstore.Config{Cache: true})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	token := rand.Text() // what the browser's cookie carries
	now := time.Now()
	rec := cloakroom.Record{
		Key:              sha256.Sum256([]byte(token)),
		Handle:           rand.Text(),
		UserID:           "alice",
		Version:          1,
		CreatedAt:        now,
		LastSeen:         now,
		IdleTimeout:      30 * time.Minute,
		AbsoluteDeadline: now.Add(12 * time.Hour),
	}
	if err := store.Commit(ctx, rec); err != nil {
		log.Fatal(err)
	}
	found, ok, err := store.Find(ctx, rec.Key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ok, found.UserID)

	// "Log out everywhere": every session of alice stops being found on
	// every gateway.
	if _, err := store.BumpGeneration(ctx, "alice"); err != nil {
		log.Fatal(err)
	}
}
