package redisaccounts_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/accountstest"
	"github.com/cloakroom/cloakroom/accounts/redisaccounts"
	"github.com/cloakroom/cloakroom/internal/testservers"
)

// testRedisClient connects to the test server; the client closes when t
// ends.
func testRedisClient(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

func TestConformance(t *testing.T) {
	addr := testservers.Redis(t)
	client := testRedisClient(t, addr)
	accountstest.Run(t, func(t *testing.T) accounts.Store {
		s, err := redisaccounts.New(client, testservers.RedisPrefix(t, addr))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestKeys checks the key layout: one hash per user under the folded
// name and a set of names, all in one cluster slot, and nothing left after
// Delete.
func TestKeys(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	client := testRedisClient(t, addr)
	ctx := t.Context()
	s, err := redisaccounts.New(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Alice", "bob"} {
		if err := s.Create(ctx, accounts.Record{User: accounts.User{Name: name, Roles: []string{"ops"}}, PasswordHash: "h-" + name}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := client.Do(ctx, client.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{prefix + "{accounts}:names", prefix + "{accounts}:user:alice", prefix + "{accounts}:user:bob"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	names, err := client.Do(ctx, client.B().Smembers().Key(want[0]).Build()).AsStrSlice()
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"alice", "bob"}) {
		t.Errorf("names set = %q, %v", names, err)
	}
	fields, err := client.Do(ctx, client.B().Hgetall().Key(want[1]).Build()).AsStrMap()
	if err != nil || fields["name"] != "Alice" || fields["hash"] != "h-Alice" || fields["roles"] != `["ops"]` {
		t.Errorf("hash of Alice = %v, %v", fields, err)
	}
	for _, name := range []string{"ALICE", "Bob"} {
		if err := s.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := client.Do(ctx, client.B().Exists().Key(want...).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("%d keys left after deleting every user (%v)", n, err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := redisaccounts.New(nil, ""); err == nil {
		t.Error("New(nil) succeeded")
	}
	client := testRedisClient(t, testservers.Redis(t))
	for _, prefix := range []string{"app{", "app}", "{x}:"} {
		if _, err := redisaccounts.New(client, prefix); err == nil {
			t.Errorf("New with prefix %q succeeded", prefix)
		}
	}
}

// TestCorruptUser checks that damaged fields are reported, not
// misread.
func TestCorruptUser(t *testing.T) {
	addr, prefix := testservers.RedisFresh(t)
	client := testRedisClient(t, addr)
	ctx := context.Background()
	s, err := redisaccounts.New(client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for field, value := range map[string]string{"roles": "not json", "disabled": "yes", "created": "yesterday"} {
		name := "mallory-" + field
		if err := s.Create(ctx, accounts.Record{User: accounts.User{Name: name}, PasswordHash: "h"}); err != nil {
			t.Fatal(err)
		}
		if err := client.Do(ctx, client.B().Hset().Key(prefix+"{accounts}:user:"+name).FieldValue().FieldValue(field, value).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, name); err == nil || errors.Is(err, accounts.ErrNoSuchUser) || !strings.Contains(err.Error(), name) {
			t.Errorf("Get with a corrupt %s field: %v, want a decoding error naming the user", field, err)
		}
		if _, err := s.List(ctx); err == nil {
			t.Errorf("List with a corrupt %s field succeeded", field)
		}
		if err := s.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}
