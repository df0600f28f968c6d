package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/storetest"
	"github.com/redis/rueidis"
)

// usedMemory reads used_memory from the server behind client (one server:
// a standalone Redis).
func usedMemory(t testing.TB, client rueidis.Client) int64 {
	t.Helper()
	info, err := client.Do(context.Background(), client.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("INFO memory has no used_memory")
	return 0
}

// typicalRecord is a session as the manager creates it after a login: a
// 22-character handle, the user's IP address and browser, a few bytes of
// values; its strings add up to about 99 bytes.
func typicalRecord(userID string, now time.Time) cloakroom.Record {
	rec := storetest.NewRecord(userID, now)
	var h [16]byte
	rand.Read(h[:])
	rec.Handle = base64.RawURLEncoding.EncodeToString(h[:])
	return rec
}

// load commits n sessions spread over users users (user-00000, ...) from
// workers goroutines, and returns the records' keys.
func load(t testing.TB, s *Store, n, users int, shape func(string, time.Time) cloakroom.Record) []cloakroom.Key {
	t.Helper()
	keys := make([]cloakroom.Key, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	now := time.Now()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rec := shape(fmt.Sprintf("user-%05d", i%users), now)
				keys[i] = rec.Key
				if err := s.Commit(context.Background(), rec); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return keys
}

// bytesPerSession loads n sessions of shape, n/10 users, into a Redis of
// its own and returns the growth of used_memory per session.
func bytesPerSession(t *testing.T, n int, shape func(string, time.Time) cloakroom.Record) int64 {
	srv := testservers.StartRedis(t)
	client := newTestClient(t, srv.Addr)
	s := newTestStore(t, client, Config{})
	before := usedMemory(t, client)
	load(t, s, n, n/10, shape)
	per := (usedMemory(t, client) - before) / int64(n)
	srv.Stop()
	return per
}

// TestMemoryPerSession measures what a session costs in Redis: Redis's
// used_memory before and after storing sessions of ten per user with about
// 99 bytes of strings. The compact layout must stay within 400 bytes a
// session.
func TestMemoryPerSession(t *testing.T) {
	t.Parallel()
	const n = 200000
	typical := bytesPerSession(t, n, typicalRecord)
	rec := typicalRecord("user-00000", time.Now())
	t.Logf("typical session (compact record %d bytes, %d in cloakroom's own encoding): %d bytes per session",
		len(encodeCompact(nil, &rec)), len(must(rec.MarshalBinary())), typical)
	if typical > 400 {
		t.Errorf("a typical session costs %d bytes of Redis memory, want at most 400", typical)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
