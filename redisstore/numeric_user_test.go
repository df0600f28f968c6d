package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
)

// A numeric user ID ("1", as apps with integer ids have) comes back from
// the unlink script as a bulk string that also parses as an integer: it
// must still be read as the user, or Delete (logout) deletes nothing.
func TestDeleteNumericUserID(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	s := newTestStore(t, newTestClient(t, addr), Config{Prefix: prefix, CacheTTL: -1})
	ctx := context.Background()
	for _, user := range []string{"1", "0", "42"} {
		var raw [32]byte
		rand.Read(raw[:])
		key, ok := cloakroom.ParseToken(base64.RawURLEncoding.EncodeToString(raw[:]))
		if !ok {
			t.Fatal("token")
		}
		now := time.Now()
		rec := cloakroom.Record{Key: key, Handle: "h" + user, UserID: user, Version: 1, CreatedAt: now, LastSeen: now,
			IdleTimeout: time.Hour, AbsoluteDeadline: now.Add(2 * time.Hour)}
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, found, err := s.Find(ctx, key); found || err != nil {
			t.Fatalf("user %q: session found after Delete (%v)", user, err)
		}
	}
}
