package storeurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

// TestOpenErrorMessages pins every byte of what Open says when it refuses
// a URL or cannot reach the store, parse errors of each kind included: the
// parsers share their checks, and sharing them must not change a message.
// PW stands for the test password, escaped; masked, it is xxxxx.
func TestOpenErrorMessages(t *testing.T) {
	pw := url.PathEscape(testPassword)
	for _, tc := range []struct{ raw, want string }{
		{"redis://:PW@127.0.0.1:1/0", "connect to redis://:xxxxx@127.0.0.1:1/0: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"redis://u:PW@127.0.0.1:6379/0?prefx=app:", "invalid store URL: redis: unknown option \"prefx\" (supported: prefix, cache_ttl, cache_lease, replica_acks, db, dial_timeout, write_timeout, addr, client_name, master_set)"},
		{"redis://:PW@127.0.0.1:6379?cache_ttl=-1s", "invalid store URL: redis: cache_ttl \"-1s\" is neither a duration such as 30s nor \"off\""},
		{"redis://:PW@127.0.0.1:6379?cache_ttl=soon", "invalid store URL: redis: cache_ttl \"soon\" is neither a duration such as 30s nor \"off\""},
		{"redis://:PW@127.0.0.1:6379?cache_lease=2h", "invalid store URL: redis: cache_lease \"2h\" is not a duration between 0 and 1m such as 250ms"},
		{"redis://:PW@127.0.0.1:6379?replica_acks=-1", "invalid store URL: redis: replica_acks \"-1\" is not a number of replicas from 0 to 16"},
		{"redis://:PW@127.0.0.1:6379?prefix=%7Bapp%7D", "invalid store URL: redis: prefix \"{app}\" contains a brace, which would break the stores' cluster hash tags"},
		{"redis://:PW@127.0.0.1:6379?prefix=a&prefix=b", "invalid store URL: redis: option prefix is given 2 times"},
		{"redis://:PW@127.0.0.1:6379?db=1&db=2", "invalid store URL: redis: option db is given 2 times"},
		{"rediss://:PW@127.0.0.1:6379?skip_verify=true", "invalid store URL: redis: skip_verify is refused: the server's TLS certificate must be verified (use a CA the system trusts)"},
		{"redis://:PW@127.0.0.1:6379/zero", "invalid store URL: redis: redis: invalid database number: \"zero\""},
		{"redis://:PW@127.0.0.1:6379/0#frag", "invalid store URL: redis: a store URL has no #fragment; write a # in a password as %23"},
		{"redis://:PW@127.0.0.1:6379/0?a=%zz", "invalid store URL: redis: the query does not parse: invalid URL escape \"%zz\""},
		{"postgres://u:PW@127.0.0.1/db?#schema=x", "invalid store URL: postgres: a store URL has no #fragment; write a # in a password as %23"},
		{"postgres://u:PW@127.0.0.1/db?a=%zz", "invalid store URL: postgres: the query does not parse: invalid URL escape \"%zz\""},
		{"postgres://u:PW@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", "open postgres://u:xxxxx@127.0.0.1:1/db?sslmode=disable&connect_timeout=5: pgstore: migrate schema \"cloakroom\": failed to connect to `user=u database=db`: 127.0.0.1:1 (127.0.0.1): dial error: dial tcp 127.0.0.1:1: connect: connection refused"},
		{"postgres://u:PW@127.0.0.1/db?cache=maybe", "invalid store URL: postgres: cache must be on or off, not \"maybe\""},
		{"postgres://u:PW@127.0.0.1/db?cache_lease=1h", "invalid store URL: postgres: cache_lease must be a duration from 100ms to 1m, not \"1h\""},
		{"postgres://u:PW@127.0.0.1/db?timeout=1ms", "invalid store URL: postgres: timeout must be a duration from 100ms to 1m, not \"1ms\""},
		{"postgres://u:PW@127.0.0.1/db?schema=a&schema=b", "invalid store URL: postgres: option schema is given 2 times"},
		{"postgres://u:PW@127.0.0.1/db?timeout=1s&timeout=2s", "invalid store URL: postgres: option timeout is given 2 times"},
		{"postgres://u:PW@127.0.0.1/db?schema=ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss", "invalid store URL: postgres: schema must be 1 to 63 bytes without control characters"},
		{"postgres://u:PW@127.0.0.1/db?sslmode=sometimes", "invalid store URL: postgres: cannot parse `postgres://u:xxxxx@127.0.0.1/db?sslmode=sometimes`: failed to configure TLS (sslmode is invalid)"},
		{"sqlite:///no/such/folder/db", "invalid store URL: sqlite: folder /no/such/folder does not exist; create it first"},
	} {
		raw := strings.ReplaceAll(tc.raw, "PW", pw)
		_, err := OpenWith(t.Context(), raw, quietOptions)
		if got := fmt.Sprint(err); got != tc.want {
			t.Errorf("Open(%s):\n got %q\nwant %q", tc.raw, got, tc.want)
		}
	}
}

// TestParsedOptions pins what the option parsers hand to the clients for
// URLs they accept (our options removed, the clients' kept) and the
// settings they keep for the stores.
func TestParsedOptions(t *testing.T) {
	for _, tc := range []struct{ raw, client, ours string }{
		{"redis://127.0.0.1:6379",
			`[127.0.0.1:6379] db 0 name "" nocache false dial 2s`, "{prefix:cloakroom: cacheTTL:0 cacheLease:0 replicaAcks:0}"},
		{"redis://127.0.0.1:6379/",
			`[127.0.0.1:6379] db 0 name "" nocache false dial 2s`, "{prefix:cloakroom: cacheTTL:0 cacheLease:0 replicaAcks:0}"},
		{"redis://u:p@127.0.0.1:6379/2?prefix=app:&cache_ttl=off&cache_lease=250ms&replica_acks=1&dial_timeout=3s&client_name=x",
			`[127.0.0.1:6379] db 2 name "x" nocache true dial 3s`, "{prefix:app: cacheTTL:-1 cacheLease:250000000 replicaAcks:1}"},
		{"rediss://h:1/0?cache_ttl=30s&addr=h2:1&addr=h3:2",
			`[h:1 h2:1 h3:2] db 0 name "" nocache false dial 2s`, "{prefix:cloakroom: cacheTTL:30000000000 cacheLease:0 replicaAcks:0}"},
		{"postgres://u:p@127.0.0.1/db",
			`postgres://u:p@127.0.0.1/db`, "{schema:cloakroom cache:false cacheLease:0 timeout:5000000000}"},
		{"postgres://u:p@127.0.0.1/db?sslmode=disable&schema=x&cache=on&cache_lease=2s&timeout=3s&pool_max_conns=4&application_name=z",
			`postgres://u:p@127.0.0.1/db?application_name=z&pool_max_conns=4&sslmode=disable`, "{schema:x cache:true cacheLease:2000000000 timeout:3000000000}"},
		{"postgresql://h/db?connect_timeout=3&cache=off",
			`postgresql://h/db?connect_timeout=3`, "{schema:cloakroom cache:false cacheLease:0 timeout:5000000000}"},
	} {
		loc, err := Parse(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		var client string
		var ours any
		if loc.Kind == "postgres" {
			cfg, set, err := parsePostgres(loc)
			if err != nil {
				t.Fatalf("parsePostgres(%s): %v", tc.raw, err)
			}
			client, ours = cfg.ConnString(), set
		} else {
			opt, set, err := parseRedis(loc)
			if err != nil {
				t.Fatalf("parseRedis(%s): %v", tc.raw, err)
			}
			client = fmt.Sprintf("%v db %d name %q nocache %v dial %v", opt.InitAddress, opt.SelectDB, opt.ClientName, opt.DisableCache, opt.Dialer.Timeout)
			ours = set
		}
		if client != tc.client || fmt.Sprintf("%+v", ours) != tc.ours {
			t.Errorf("%s:\n got %s %+v\nwant %s %s", tc.raw, client, ours, tc.client, tc.ours)
		}
	}
}

// TestDatabaseOpenClosesOnFailure: when the account or the throttle store
// does not open, what was opened is closed once, and the error names the
// step without the URL's password.
func TestDatabaseOpenClosesOnFailure(t *testing.T) {
	loc, err := Parse("redis://u:" + url.PathEscape(testPassword) + "@127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	failure := errors.New("refused by " + testPassword)
	for _, tc := range []struct {
		accountsErr, throttleErr error
		want                     string
	}{
		{failure, nil, "open accounts in redis://u:xxxxx@127.0.0.1:6379/0: refused by xxxxx"},
		{nil, failure, "open throttle in redis://u:xxxxx@127.0.0.1:6379/0: refused by xxxxx"},
	} {
		closed := 0
		st, err := database{
			loc:      loc,
			close:    func() error { closed++; return nil },
			accounts: func() (accounts.Store, error) { return memaccounts.New(), tc.accountsErr },
			throttle: func() (accounts.ThrottleStore, error) { return memaccounts.NewThrottle(0), tc.throttleErr },
		}.open()
		if st != nil || fmt.Sprint(err) != tc.want || !errors.Is(err, failure) || closed != 1 {
			t.Errorf("got %v, %v, closed %d times; want %s, closed once", st, err, closed, tc.want)
		}
	}
}
