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

// Errors returned by [Parse] and [Open], wrapped with %w. This package's
// messages reach the operator's terminal as they are, so they carry no Go
// package name.
var (
	// ErrInvalidURL means the URL cannot name a store; the message says why.
	ErrInvalidURL = errors.New("invalid store URL")
	// ErrNoDatabase means the URL names a SQLite file that does not exist,
	// and Options.CreateSQLite was not set.
	ErrNoDatabase = errors.New("store does not exist")
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
	// CreateSQLite creates a missing SQLite database file (owner-only).
	// Default false: a missing file is an [ErrNoDatabase] error, so a
	// mistyped path never turns into a new, empty database. The commands
	// that run the gateway set it; those that manage its users do not.
	CreateSQLite bool
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

// invalidURL returns an [ErrInvalidURL] error saying why.
func invalidURL(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidURL}, args...)...)
}

// Parse checks a store URL without touching the store.
func Parse(raw string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, invalidURL(format, args...)
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

// Check checks a store URL as far as Open does before it connects, the
// options of network stores included, and returns the warnings about what
// it accepts but is unsafe: a connection to another host that is not
// encrypted and verified. Open does not repeat them; its caller shows them
// (serve logs them at start, --check-config prints them).
func Check(raw string) (loc Location, warnings []string, err error) {
	if loc, err = Parse(raw); err != nil {
		return Location{}, nil, err
	}
	switch loc.Kind {
	case "redis":
		if _, _, err := parseRedis(loc); err != nil {
			return Location{}, nil, err
		}
		if plaintextToRemote(loc, loc.URL.Scheme == "rediss") {
			warnings = append(warnings, fmt.Sprintf("the Redis connection to %s is not encrypted; sessions and password hashes cross the network in clear text: use rediss://", safeString(loc)))
		}
	case "postgres":
		cfg, _, err := parsePostgres(loc)
		if err != nil {
			return Location{}, nil, err
		}
		if plaintextToRemote(loc, verifiedTLS(cfg)) {
			warnings = append(warnings, fmt.Sprintf("the PostgreSQL connection to %s is not verified TLS; sessions and password hashes may cross the network readable or to an impostor: add sslmode=verify-full", safeString(loc)))
		}
	}
	return loc, warnings, nil
}

func parseSQLite(path string) (Location, error) {
	bad := func(format string, args ...any) (Location, error) {
		return Location{}, invalidURL("sqlite: "+format, args...)
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

// splitQuery reads the query of a network store URL: our options, named
// by own, each given at most once, and the URL for the client, without
// them. A fragment is refused: in a store URL it is an unescaped '#' in
// the password.
func splitQuery(loc Location, own []string) (client url.URL, ours url.Values, err error) {
	bad := func(format string, args ...any) (url.URL, url.Values, error) {
		return url.URL{}, nil, invalidURL(loc.Kind+": "+format, args...)
	}
	client = *loc.URL
	if client.Fragment != "" {
		return bad("a store URL has no #fragment; write a # in a password as %%23")
	}
	query, err := url.ParseQuery(client.RawQuery)
	if err != nil {
		return bad("the query does not parse: %s", redactedMessage(err, loc))
	}
	ours = url.Values{}
	for _, name := range own {
		if n := len(query[name]); n > 1 {
			return bad("option %s is given %d times", name, n)
		}
		if query.Has(name) {
			ours[name] = query[name]
			query.Del(name)
		}
	}
	client.RawQuery = query.Encode()
	return client, ours, nil
}

// database is what the stores of one URL share: the session store, open
// on it, and how to open the account and throttle stores beside it.
type database struct {
	loc      Location
	sessions cloakroom.Store
	close    func() error // closes the session store and the database
	accounts func() (accounts.Store, error)
	throttle func() (accounts.ThrottleStore, error)
}

// open opens the account and throttle stores; when one fails, the
// database is closed again.
func (db database) open() (*Stores, error) {
	users, err := db.accounts()
	if err != nil {
		db.close()
		return nil, openError("open accounts in", db.loc, err)
	}
	throttle, err := db.throttle()
	if err != nil {
		db.close()
		return nil, openError("open throttle in", db.loc, err)
	}
	return &Stores{Sessions: db.sessions, Accounts: users, Throttle: throttle, Close: db.close}, nil
}

// closeSessionsThen returns a Close for a session store on a connection of
// its own: the store stops its background work, then the connection
// closes.
func closeSessionsThen(closeSessions func() error, closeConnection func()) func() error {
	return func() error {
		err := closeSessions()
		closeConnection()
		return err
	}
}

// openError says which step of opening the stores at loc failed, without
// loc's passwords.
func openError(step string, loc Location, err error) error {
	return fmt.Errorf("%s %s: %w", step, safeString(loc), withoutPasswords(err, loc))
}

// Open parses raw and opens the stores it names; a missing SQLite file is
// an [ErrNoDatabase] error (see [Options.CreateSQLite]). The caller must
// call Stores.Close.
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
