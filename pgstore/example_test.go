package pgstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
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

// A gateway closes the open streams of a session when it ends on any node.
// cloakroom.Manager does this for Session.Watch; this is what it relies on.
func ExampleStore_WatchEnds() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, pgstore.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	go store.WatchEnds(ctx, func(e cloakroom.End) {
		switch {
		case e.All: // the listener reconnected: re-check every open session
		case e.UserID != "": // sessions of e.UserID below e.Generation ended
		default: // the session under e.Key ended
		}
	})
}

// A renewal replaces a session by a new one only if it still lives: a
// request parked while the user logged out gets ErrNotFound, not a new
// session.
func ExampleStore_Rotate() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, pgstore.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	var old cloakroom.Record // the session being renewed, as Find returned it
	next := old
	next.Key = sha256.Sum256([]byte(rand.Text()))
	next.Version = 1
	_, err = store.Rotate(ctx, cloakroom.Rotation{Old: old.Key, OldMustLive: true, New: next})
	if errors.Is(err, cloakroom.ErrNotFound) {
		fmt.Println("logged out meanwhile: no new session")
	}
}
