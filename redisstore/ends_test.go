package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/storetest"
	"github.com/redis/rueidis"
)

func FuzzParseEnd(f *testing.F) {
	f.Add("k" + string(make([]byte, 32)))
	f.Add("g12:alice")
	f.Add("g007:a:b")
	f.Add("g:")
	f.Add("e1")
	f.Add("e0")
	f.Add("e+7")
	f.Fuzz(func(t *testing.T, msg string) {
		e, ok := parseEnd(msg)
		if !ok {
			return
		}
		// What parses reads back the same from the form the scripts
		// publish.
		canonical := endKeyMessage(e.Key)
		switch msg[0] {
		case 'g':
			canonical = bumpMessage(e.UserID, e.Generation)
		case 'e':
			if e.Epoch == 0 {
				t.Fatalf("parseEnd(%q) = %+v: epoch 0 is never announced", msg, e)
			}
			canonical = epochMessage(e.Epoch)
		}
		if again, ok := parseEnd(canonical); !ok || again != e {
			t.Fatalf("parseEnd(%q) = %+v, but its published form %q reads %+v, %v", msg, e, canonical, again, ok)
		}
		if msg[0] == 'k' && canonical != msg {
			t.Fatalf("key end %q reads as %+v", msg, e)
		}
	})
}

// TestWatchEndsAfterReconnect cuts the subscription's connection: the
// watcher must say that ends may have been missed, and go on reporting.
func TestWatchEndsAfterReconnect(t *testing.T) {
	srv := testservers.StartRedis(t)
	client := newTestClient(t, srv.Addr)
	s := newTestStore(t, client, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	ends := make(chan cloakroom.End, 64)
	done := make(chan error)
	go func() {
		done <- s.WatchEnds(ctx, func(e cloakroom.End) {
			select {
			case ends <- e:
			default:
			}
		})
	}()
	awaitEnd := func(what string, match func(cloakroom.End) bool, poke func()) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case e := <-ends:
				if match(e) {
					return
				}
			case <-tick.C:
				if poke != nil {
					poke()
				}
			case <-deadline:
				t.Fatalf("no notification of %s", what)
			}
		}
	}
	deleteProbe := func(key *cloakroom.Key) func() {
		return func() {
			rec := storetest.NewRecord("probe", time.Now())
			*key = rec.Key
			if err := s.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, rec.Key); err != nil {
				t.Fatal(err)
			}
		}
	}
	var probe cloakroom.Key
	awaitEnd("a delete", func(e cloakroom.End) bool { return e.Key == probe && !e.All }, deleteProbe(&probe))

	killConnections(t, srv.Addr)
	awaitEnd("the reconnect", func(e cloakroom.End) bool { return e.All }, nil)
	awaitEnd("a delete after the reconnect", func(e cloakroom.End) bool { return e.Key == probe && !e.All }, deleteProbe(&probe))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("WatchEnds returned %v after its context ended", err)
	}
}

// killConnections closes every client connection of the Redis at addr,
// as a restart or a network failure would.
func killConnections(t *testing.T, addr string) {
	t.Helper()
	killer, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close()
	ctx := context.Background()
	self, err := killer.Do(ctx, killer.B().ClientId().Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	list, err := killer.Do(ctx, killer.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		idText, ok := strings.CutPrefix(strings.TrimPrefix(strings.Fields(line)[0], "txt:"), "id=")
		id, err := strconv.ParseInt(idText, 10, 64)
		if !ok || err != nil || id == self {
			continue
		}
		if err := killer.Do(ctx, killer.B().ClientKill().Id(id).Build()).Error(); err != nil {
			t.Fatalf("CLIENT KILL ID %d: %v", id, err)
		}
	}
}

// TestOwnPatternMatchesOnlyTheChannel checks the pattern of a Store's
// subscription with Redis' own glob matching (SCAN MATCH uses the same code
// as PSUBSCRIBE), for prefixes holding glob characters too.
func TestOwnPatternMatchesOnlyTheChannel(t *testing.T) {
	skipOnCluster(t, "SCAN reads one node's keys")
	addr, base := testservers.RedisFresh(t)
	client := newTestClient(t, addr)
	ctx := context.Background()
	for i, prefix := range []string{"cloakroom:", "a*b?c[d]e\\f^g-h:", "x"} {
		prefix = fmt.Sprintf("%s%d:%s", base, i, prefix)
		channel := prefix + "ends"
		pattern := ownPattern(channel, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
		if pattern == ownPattern(channel, [8]byte{9}) {
			t.Errorf("two Stores share the pattern %q", pattern)
		}
		for _, k := range []string{channel, prefix + "endx", prefix + "end", channel + "s", prefix + "xends"} {
			if err := client.Do(ctx, client.B().Set().Key(k).Value("1").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
		var matched []string
		for cursor := uint64(0); ; {
			e, err := client.Do(ctx, client.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatal(err)
			}
			matched = append(matched, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
		if len(matched) != 1 || matched[0] != channel {
			t.Errorf("pattern %q matches %q, want only %q", pattern, matched, channel)
		}
	}
}
