package accounts_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/accounts/pgaccounts"
	"github.com/cloakroom/cloakroom/accounts/redisaccounts"
	"github.com/cloakroom/cloakroom/internal/testservers"
)

// throttleFactories are the shared throttle stores, on real servers.
var throttleFactories = []struct {
	name string
	new  func(t *testing.T) accounts.ThrottleStore
}{
	{"Redis", func(t *testing.T) accounts.ThrottleStore {
		addr, prefix := testservers.RedisFresh(t)
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		s, err := redisaccounts.NewThrottle(client, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"Postgres", func(t *testing.T) accounts.ThrottleStore {
		pool, schema := postgresSchema(t)
		s, err := pgaccounts.NewThrottle(t.Context(), pool, schema)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// postgresSchema connects to the test server and names a schema no other
// test uses, dropped when t ends; the pool closes when t ends.
func postgresSchema(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testservers.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	schema := "accounts_throttle_test_" + strings.ToLower(rand.Text())
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("dropping schema %s: %v", schema, err)
		}
	})
	return pool, schema
}

// TestThrottleSharedAcrossNodes runs three services ("gateway nodes") on
// one account store and one shared throttle store: the account's budget is
// one budget for all nodes, a device token from one node is known to the
// others, and concurrent guesses on every node are counted exactly.
func TestThrottleSharedAcrossNodes(t *testing.T) {
	for _, tf := range throttleFactories {
		t.Run(tf.name, func(t *testing.T) {
			ctx := t.Context()
			users := memaccounts.New()
			shared := tf.new(t)
			clk := newClock() // one clock for the cluster
			var nodes []*fixture
			for range 3 {
				n := newFixture(t, users, func(c *accounts.Config) { c.Throttle, c.Now = shared, clk.Now })
				n.clock = clk
				nodes = append(nodes, n)
			}
			nodes[0].mustAdd(t, "alice", "alice's long password")
			res, err := nodes[0].svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: "alice's long password", ClientIP: "203.0.113.7"})
			if err != nil {
				t.Fatal(err)
			}

			// Five free failures in all, whichever node they reach.
			for i := range 5 {
				_, err := nodes[i%3].svc.Authenticate(ctx, "alice", "wrong guess", fmt.Sprintf("198.51.100.%d", i))
				if err != accounts.ErrInvalidCredentials {
					t.Fatalf("free failure %d: %v", i+1, err)
				}
			}
			for i, n := range nodes {
				_, err := n.svc.Authenticate(ctx, "alice", "alice's long password", "198.51.100.50")
				var te *accounts.ThrottledError
				if !errors.As(err, &te) || te.RetryAfter <= 0 || te.RetryAfter > time.Second {
					t.Errorf("node %d after 5 failures elsewhere: %v, want throttled for up to 1s", i, err)
				}
			}
			// The device token from node 0 is known on node 2.
			if _, err := nodes[2].svc.Login(ctx, accounts.LoginAttempt{Name: "alice", Password: "alice's long password", ClientIP: "203.0.113.7", Devices: res.Devices}); err != nil {
				t.Errorf("known device on another node: %v", err)
			}

			// Concurrent guesses for a fresh account on all nodes: exactly
			// the free budget gets through.
			nodes[0].mustAdd(t, "bob", "bob's long password")
			var wg sync.WaitGroup
			var mu sync.Mutex
			counted := 0
			for i := range 12 {
				wg.Go(func() {
					_, err := nodes[i%3].svc.Authenticate(ctx, "bob", "wrong guess", fmt.Sprintf("192.0.2.%d", i))
					if err == accounts.ErrInvalidCredentials {
						mu.Lock()
						counted++
						mu.Unlock()
					} else if !errors.Is(err, accounts.ErrThrottled) {
						t.Errorf("guess %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			if counted != 5 {
				t.Errorf("%d concurrent guesses on 3 nodes were checked, want 5", counted)
			}
			// The wait passes on the shared clock; a success clears it.
			nodes[0].clock.Advance(time.Second)
			if _, err := nodes[1].svc.Authenticate(ctx, "bob", "bob's long password", "192.0.2.99"); err != nil {
				t.Errorf("bob after the wait: %v", err)
			}
			if _, err := nodes[2].svc.Authenticate(ctx, "bob", "wrong guess", "192.0.2.98"); err != accounts.ErrInvalidCredentials {
				t.Errorf("after the success the budget is fresh: %v", err)
			}
		})
	}
}
