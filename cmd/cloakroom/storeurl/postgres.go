package storeurl

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/pgaccounts"
	"github.com/cloakroom/cloakroom/pgstore"
)

// postgresConnectTimeout bounds each connection attempt when the URL sets
// no connect_timeout, so an unreachable server fails startup instead of
// hanging it.
const postgresConnectTimeout = 10 * time.Second

// maxPostgresIdentifier is PostgreSQL's identifier limit; longer names are
// truncated by the server, which could merge two schemas.
const maxPostgresIdentifier = 63

// postgresSettings are the options a postgres:// URL sets besides pgx's.
type postgresSettings struct {
	schema string // holds both stores' tables
	// cache turns on pgstore's in-process cache of session checks.
	//
	// Off by default: without it every check reads PostgreSQL. With it,
	// a revocation returns only once every caching gateway has dropped
	// the session, or a lease (1 s) has passed after which a gateway that
	// did not hear of it reads PostgreSQL again; so no gateway accepts a
	// revoked session after the revocation returned either way. What the
	// cache costs: a heartbeat NOTIFY every 250 ms per gateway, and a
	// revocation waiting up to a second when a gateway is unresponsive or
	// has just started.
	cache bool
	// cacheLease is pgstore's Config.CacheLease (cache_lease=, default
	// pgstore's 1 s): how long a gateway that stops hearing its listener
	// keeps answering from memory, and how long a revocation waits for a
	// gateway that does not acknowledge it.
	cacheLease time.Duration
	// timeout bounds each session-store call (timeout=, default 5s).
	timeout time.Duration
}

// parsePostgres turns a postgres:// or postgresql:// location into a pool
// configuration and our settings, without connecting:
//
//	postgres://user:pass@host:5432/db?sslmode=verify-full&schema=cloakroom&cache=off
//
// schema (default "cloakroom"), cache (on or off, default off), cache_lease
// (default 1s) and timeout (per session-store call, default 5s) are ours
// and removed; everything else is pgx's (libpq's options, plus pool_max_conns
// and the other pool_ settings). Errors never contain the password.
func parsePostgres(loc Location) (*pgxpool.Config, postgresSettings, error) {
	bad := func(format string, args ...any) (*pgxpool.Config, postgresSettings, error) {
		return nil, postgresSettings{}, invalidURL("postgres: "+format, args...)
	}
	u, query, err := splitQuery(loc, []string{"schema", "cache", "cache_lease", "timeout"})
	if err != nil {
		return nil, postgresSettings{}, err
	}
	set := postgresSettings{schema: query.Get("schema")}
	if set.schema == "" {
		set.schema = pgstore.DefaultSchema
	}
	if len(set.schema) > maxPostgresIdentifier || strings.ContainsFunc(set.schema, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return bad("schema must be 1 to %d bytes without control characters", maxPostgresIdentifier)
	}
	switch c := query.Get("cache"); c {
	case "", "off":
	case "on":
		set.cache = true
	default:
		return bad("cache must be on or off, not %q", quoteSafe(c))
	}
	if l := query.Get("cache_lease"); l != "" {
		d, err := time.ParseDuration(l)
		if err != nil || d < 100*time.Millisecond || d > time.Minute {
			return bad("cache_lease must be a duration from 100ms to 1m, not %q", quoteSafe(l))
		}
		set.cacheLease = d
	}
	set.timeout = defaultStoreTimeout
	if t := query.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d < 100*time.Millisecond || d > time.Minute {
			return bad("timeout must be a duration from 100ms to 1m, not %q", quoteSafe(t))
		}
		set.timeout = d
	}
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return bad("%s", redactedMessage(err, loc))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = postgresConnectTimeout
	}
	return cfg, set, nil
}

// verifiedTLS reports whether every connection attempt of cfg uses TLS
// with a verified server certificate (sslmode verify-ca or verify-full).
func verifiedTLS(cfg *pgxpool.Config) bool {
	tls := cfg.ConnConfig.TLSConfig
	if tls == nil || (tls.InsecureSkipVerify && tls.VerifyPeerCertificate == nil) {
		return false
	}
	for _, f := range cfg.ConnConfig.Fallbacks {
		if f.TLSConfig == nil {
			return false
		}
	}
	return true
}

// openPostgres opens both stores on one pgx pool: the sessions with pgstore,
// the users with pgaccounts.New, in the same schema. Close stops
// pgstore's background work and closes the pool.
func openPostgres(ctx context.Context, loc Location, opts Options) (*Stores, error) {
	cfg, set, err := parsePostgres(loc)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, openError("connect to", loc, err)
	}
	sessions, err := pgstore.New(ctx, pool, pgstore.Config{Schema: set.schema, Cache: set.cache, CacheLease: set.cacheLease, Logger: opts.Logger})
	if err != nil {
		pool.Close()
		return nil, openError("open", loc, err)
	}
	return database{
		loc:      loc,
		sessions: withTimeout(sessions, set.timeout),
		close:    closeSessionsThen(sessions.Close, pool.Close),
		accounts: func() (accounts.Store, error) { return pgaccounts.New(ctx, pool, set.schema) },
		throttle: func() (accounts.ThrottleStore, error) { return pgaccounts.NewThrottle(ctx, pool, set.schema) },
	}.open()
}
