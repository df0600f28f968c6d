package storeurl

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/redisaccounts"
	"github.com/cloakroom/cloakroom/redisstore"
)

// Query options of a redis:// URL. Ours are removed before the URL goes to
// rueidis; of rueidis' own, only those below are accepted, so a typo is an
// error instead of a silently ignored setting. rueidis' skip_verify is
// refused on purpose: a store holding every session must be authenticated.
var (
	redisOwnOptions     = []string{"prefix", "cache_ttl", "cache_lease", "replica_acks"}
	redisRueidisOptions = []string{"db", "dial_timeout", "write_timeout", "addr", "client_name", "master_set"}
)

// Connection failure handling. rueidis retries a failed read until the
// caller's context ends, and a request's context has no deadline: while
// Redis is unreachable every session check would hang instead of failing.
// A few quick retries ride out a failover or a dropped connection; then
// the error reaches the middleware, which answers 503.
const (
	redisMaxRetries       = 3
	redisFirstRetryDelay  = 50 * time.Millisecond // doubled on each retry
	redisDefaultDialLimit = 2 * time.Second       // rueidis' own default is 5s
)

// redisRetryDelay is the client's RetryDelay: 50, 100 and 200ms, then give up.
func redisRetryDelay(attempts int, _ rueidis.Completed, _ error) time.Duration {
	if attempts > redisMaxRetries {
		return -1
	}
	return redisFirstRetryDelay << (attempts - 1)
}

// redisSettings are the options a redis:// URL sets besides the client's.
type redisSettings struct {
	prefix      string        // key prefix of both stores
	cacheTTL    time.Duration // redisstore.Config.CacheTTL: 0 default, < 0 off
	cacheLease  time.Duration // redisstore.Config.CacheLease: 0 default
	replicaAcks int           // redisstore.Config.ReplicaAcks
}

// parseRedis turns a redis:// or rediss:// location into client options and
// our settings, without connecting:
//
//	redis://[user:pass@]host:port[/db][?prefix=app:&cache_ttl=30s]
//
// cache_ttl is a Go duration bounding how long a session check is served
// from the client-side cache (0: redisstore's default of one minute), or
// "off" to ask Redis on every request. Errors never contain the password.
func parseRedis(loc Location) (rueidis.ClientOption, redisSettings, error) {
	bad := func(format string, args ...any) (rueidis.ClientOption, redisSettings, error) {
		return rueidis.ClientOption{}, redisSettings{}, invalidURL("redis: "+format, args...)
	}
	u, query, err := splitQuery(loc, redisOwnOptions)
	if err != nil {
		return rueidis.ClientOption{}, redisSettings{}, err
	}
	for name, values := range u.Query() {
		switch {
		case slices.Contains(redisRueidisOptions, name):
			if len(values) > 1 && name != "addr" {
				return bad("option %s is given %d times", name, len(values))
			}
		case name == "skip_verify":
			return bad("skip_verify is refused: the server's TLS certificate must be verified (use a CA the system trusts)")
		default:
			return bad("unknown option %q (supported: %s)", quoteSafe(name), strings.Join(slices.Concat(redisOwnOptions, redisRueidisOptions), ", "))
		}
	}
	var set redisSettings
	set.prefix = query.Get("prefix")
	if set.prefix == "" {
		set.prefix = redisstore.DefaultPrefix
	}
	if strings.ContainsAny(set.prefix, "{}") {
		return bad("prefix %q contains a brace, which would break the stores' cluster hash tags", quoteSafe(set.prefix))
	}
	switch ttl := query.Get("cache_ttl"); ttl {
	case "", "0":
	case "off":
		set.cacheTTL = -1
	default:
		d, err := time.ParseDuration(ttl)
		if err != nil || d < 0 {
			return bad("cache_ttl %q is neither a duration such as 30s nor \"off\"", quoteSafe(ttl))
		}
		set.cacheTTL = d
	}
	if v := query.Get("cache_lease"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			return bad("cache_lease %q is not a duration between 0 and 1m such as 250ms", quoteSafe(v))
		}
		set.cacheLease = d
	}
	if v := query.Get("replica_acks"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 16 {
			return bad("replica_acks %q is not a number of replicas from 0 to 16", quoteSafe(v))
		}
		set.replicaAcks = n
	}
	if u.Path == "/" {
		u.Path = "" // redis://host:6379/ means database 0, as without the slash
	}
	opt, err := rueidis.ParseURL(u.String())
	if err != nil {
		return bad("%s", redactedMessage(err, loc))
	}
	if set.cacheTTL < 0 {
		// No tracking at all: Redis keeps no invalidation state for us.
		opt.DisableCache = true
	}
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = redisDefaultDialLimit
	}
	opt.RetryDelay = redisRetryDelay
	return opt, set, nil
}

// openRedis connects to Redis and opens both stores on one client: the
// sessions with redisstore (client-side caching invalidated through RESP3
// tracking), the users with redisaccounts.New. Close closes the client.
func openRedis(_ context.Context, loc Location, _ Options) (*Stores, error) {
	opt, set, err := parseRedis(loc)
	if err != nil {
		return nil, err
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, openError("connect to", loc, err)
	}
	sessions, err := redisstore.New(client, redisstore.Config{Prefix: set.prefix, CacheTTL: set.cacheTTL, CacheLease: set.cacheLease, ReplicaAcks: set.replicaAcks})
	if err != nil {
		client.Close()
		return nil, openError("open", loc, err)
	}
	return database{
		loc:      loc,
		sessions: sessions,
		close:    closeSessionsThen(sessions.Close, client.Close),
		accounts: func() (accounts.Store, error) { return redisaccounts.New(client, set.prefix) },
		throttle: func() (accounts.ThrottleStore, error) { return redisaccounts.NewThrottle(client, set.prefix) },
	}.open()
}
