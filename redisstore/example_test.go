package redisstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/redis/rueidis"
)

// Example creates a session for a user, checks it the way every request
// does, and revokes it by bumping the user's generation.
func Example() {
	ctx := context.Background()
	// The application owns the client: TLS, pool sizes and cluster or
	// Sentinel topology are chosen here.
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	store, err := redisstore.New(client, redisstore.Config{Prefix: "myapp:"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	// The browser gets the token; the store only ever sees its hash.
	token := rand.Text()
	gen, err := store.Generation(ctx, "user-42")
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	rec := cloakroom.Record{
		Key:              sha256.Sum256([]byte(token)),
		Handle:           rand.Text(),
		UserID:           "user-42",
		Generation:       gen,
		Version:          1,
		CreatedAt:        now,
		LastSeen:         now,
		IdleTimeout:      30 * time.Minute,
		AbsoluteDeadline: now.Add(12 * time.Hour),
	}
	if err := store.Commit(ctx, rec); err != nil {
		log.Fatal(err)
	}

	// A hot check is answered from the client-side cache.
	found, ok, err := store.Find(ctx, sha256.Sum256([]byte(token)))
	if err != nil {
		log.Fatal(err) // fail closed: treat the request as logged out
	}
	fmt.Println("found:", ok, found.UserID)

	// "Log out everywhere": every node stops finding the session.
	if _, err := store.BumpGeneration(ctx, "user-42"); err != nil {
		log.Fatal(err)
	}
	_, ok, _ = store.Find(ctx, rec.Key)
	fmt.Println("found after bump:", ok)
}
