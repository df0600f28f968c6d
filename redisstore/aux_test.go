package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/storetest"
)

// TestAuxKeyAndTTL checks where an auxiliary record lives and that Redis
// drops it a margin after its expiry, and that DeleteAux removes the key.
func TestAuxKeyAndTTL(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	ctx := context.Background()
	client := newTestClient(t, addr)
	s := newTestStore(t, client, Config{Prefix: prefix})
	rec := auxRecord(t, s, "ttl", false)
	key := prefix + "x:" + string(rec.Key[:])
	ms, err := client.Do(ctx, client.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := time.Duration(ms)*time.Millisecond, time.Until(rec.Expires)+ttlMargin; got > want+time.Second || got < want-5*time.Second {
		t.Errorf("record TTL = %v, want about %v", got, want)
	}
	// A session under the same key lives on.
	sess := storetest.NewRecord("", time.Now())
	sess.Key = rec.Key
	if err := s.Commit(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAux(ctx, rec.Key); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Do(ctx, client.B().Exists().Key(key).Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("after DeleteAux the key exists: %d, %v", n, err)
	}
	if _, found, err := s.Find(ctx, sess.Key); err != nil || !found {
		t.Fatalf("DeleteAux touched the session under the same key: %v, %v", found, err)
	}
}
