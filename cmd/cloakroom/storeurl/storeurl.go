// Package storeurl turns the gateway's --store URL into the stores it
// needs: the session store and the user-account store, which share one
// database.
//
//	sqlite://./cloakroom.db            a file relative to the working directory
//	sqlite:///var/lib/cloakroom/db     an absolute path
//	redis://user:pass@host:6379/0      Redis; rediss:// for TLS
//	postgres://user:pass@host/db       PostgreSQL; postgresql:// too
//
// Network URLs take options in the query: prefix= and cache_ttl= (a
// duration, or off) for Redis; schema= (default cloakroom) and cache=on|off
// (default off) for PostgreSQL; see redis.go and postgres.go for the
// clients' own options that pass through. Errors never show a password.
//
// Each kind of store is one entry in the openers table, so adding a backend
// is one function and one line.
package storeurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
)

// Errors returned by [Parse] and [Open], wrapped with %w.
var (
	// ErrInvalidURL means the URL cannot name a store; the message says why.
	ErrInvalidURL = errors.New("storeurl: invalid store URL")
)

// maxURLLength bounds a store URL; anything longer is a mistake.
const maxURLLength = 4096

// Location is a parsed store URL.
type Location struct {
	// Kind is the canonical scheme: "sqlite", "redis" or "postgres".
	Kind string
	// Path is the database file of a sqlite location, as written (relative
	// paths are relative to the working directory).
	Path string
	// URL is the parsed URL of a network store; nil for sqlite.
	URL *url.URL
}

// String returns the location with any password masked, safe for logs and
// error messages.
func (l Location) String() string {
	if l.URL != nil {
		u := *l.URL
		// libpq-style URLs may also carry the password as a parameter.
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return l.Kind + "://" + l.Path
}

// Stores is what a store URL opens: the session store and the account store
// sharing one database.
type Stores struct {
	Location Location
	// Sessions keeps the sessions. It implements cloakroom.Pinger when the
	// backend can report its health.
	Sessions cloakroom.Store
	// Accounts keeps the gateway's users.
	Accounts accounts.Store
	// Throttle keeps the failed-login counters: where every node sharing
	// the database sees them, or in memory for SQLite (one node).
	Throttle accounts.ThrottleStore
	// Close releases the database. Call it once, after the servers using
	// the stores have stopped.
	Close func() error
}

// Options adjusts how stores are opened. The zero value is fine.
type Options struct {
	// Logger receives the stores' background failures (an expired-session
	// purge that failed, say). Default slog.Default().
	Logger *slog.Logger
}

// opener opens the stores at a parsed location.
type opener func(ctx context.Context, loc Location, opts Options) (*Stores, error)

// kinds maps every accepted scheme to its canonical kind.
var kinds = map[string]string{
	"sqlite":     "sqlite",
	"redis":      "redis",
	"rediss":     "redis",
	"postgres":   "postgres",
	"postgresql": "postgres",
}

// openers has one entry per kind of store.
var openers = map[string]opener{
	"sqlite":   openSQLite,
	"redis":    openRedis,
	"postgres": openPostgres,
}

// Schemes returns the accepted URL schemes, sorted.
func Schemes() []string {
	out := make([]string, 0, len(kinds))
	for s := range kinds {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Parse checks a store URL without touching the store.
func Parse(raw string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidURL}, args...)...)
	}
	if raw == "" {
		return bad("empty; use for example sqlite://./cloakroom.db")
	}
	if len(raw) > maxURLLength {
		return bad("longer than %d bytes", maxURLLength)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return bad("no scheme; write sqlite://%s for a SQLite file", quoteSafe(raw))
	}
	kind, ok := kinds[strings.ToLower(scheme)]
	if !ok {
		return bad("unknown scheme %q (supported: %s)", quoteSafe(scheme), strings.Join(Schemes(), ", "))
	}
	if kind == "sqlite" {
		return parseSQLite(rest)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The parser's reason quotes the part it choked on, which is often
		// the password (an unescaped '#', '/' or '@' in it): say nothing of
		// the URL's content.
		return bad("%s URL does not parse; percent-encode special characters in the user name and password (# as %%23, / as %%2F, @ as %%40)", kind)
	}
	if u.Host == "" {
		return bad("%s URL needs a host, as in %s://localhost:%s", kind, scheme, map[string]string{"redis": "6379", "postgres": "5432/cloakroom"}[kind])
	}
	return Location{Kind: kind, URL: u}, nil
}

func parseSQLite(path string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, fmt.Errorf("%w: sqlite: "+format, append([]any{ErrInvalidURL}, args...)...)
	}
	switch {
	case path == "":
		return bad("needs a file path, as in sqlite://./cloakroom.db or sqlite:///var/lib/cloakroom/cloakroom.db")
	case strings.ContainsAny(path, "?#"):
		return bad("query parameters and fragments are not supported; the URL is sqlite://PATH")
	case strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:"):
		return bad("%q is not a file path; in-memory databases would lose every session and user at exit", path)
	case strings.HasSuffix(path, "/"):
		return bad("%q names a directory, not a database file", path)
	}
	for _, c := range path {
		if c < 0x20 || c == 0x7f {
			return bad("the path contains a control character")
		}
	}
	return Location{Kind: "sqlite", Path: path}, nil
}

// quoteSafe shortens a user-supplied string for an error message. A string
// that might carry a password (user:pass@) is not repeated at all.
func quoteSafe(s string) string {
	if strings.Contains(s, "@") {
		return "(redacted)"
	}
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Open parses raw and opens the stores it names. The caller must call
// Stores.Close.
func Open(ctx context.Context, raw string) (*Stores, error) {
	return OpenWith(ctx, raw, Options{})
}

// OpenWith is [Open] with options.
func OpenWith(ctx context.Context, raw string, opts Options) (*Stores, error) {
	loc, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	st, err := openers[loc.Kind](ctx, loc, opts)
	if err != nil {
		return nil, err
	}
	st.Location = loc
	return st, nil
}
