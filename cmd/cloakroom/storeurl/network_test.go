package storeurl

// Tests of the redis:// and postgres:// openers against real servers
// (internal/testservers). They are in package storeurl so the fuzz targets
// can reach the option parsers without connecting.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/redisstore"
)

// testPassword is the password the tests write into URLs; no message may
// contain it.
const testPassword = "hunter2-S3cret"

var quietOptions = Options{Logger: slog.New(slog.DiscardHandler)}

func uniqueName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// roundTrip writes a session and a user through st and reads them back.
func roundTrip(t *testing.T, st *Stores) {
	t.Helper()
	ctx := t.Context()
	pinger, ok := st.Sessions.(cloakroom.Pinger)
	if !ok {
		t.Fatalf("%T does not implement cloakroom.Pinger", st.Sessions)
	}
	if err := pinger.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	now := time.Now()
	var key cloakroom.Key
	rand.Read(key[:])
	rec := cloakroom.Record{Key: key, Handle: "h", UserID: "alice", Version: 1, CreatedAt: now, LastSeen: now,
		IdleTimeout: time.Hour, AbsoluteDeadline: now.Add(2 * time.Hour), Data: []byte("values")}
	if err := st.Sessions.Commit(ctx, rec); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	got, found, err := st.Sessions.Find(ctx, key)
	if err != nil || !found || got.UserID != "alice" || string(got.Data) != "values" {
		t.Fatalf("Find = %q %q, %v, %v", got.UserID, got.Data, found, err)
	}
	if _, err := st.Sessions.BumpGeneration(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, found, err := st.Sessions.Find(ctx, key); err != nil || found {
		t.Fatalf("Find after revocation: %v, %v", found, err)
	}

	user := accounts.Record{User: accounts.User{Name: "Alice", Roles: []string{"admin"}, CreatedAt: now}, PasswordHash: "$argon2id$fake"}
	if err := st.Accounts.Create(ctx, user); err != nil {
		t.Fatalf("create user: %v", err)
	}
	back, err := st.Accounts.Get(ctx, "alice")
	if err != nil || back.Name != "Alice" || back.PasswordHash != user.PasswordHash || len(back.Roles) != 1 {
		t.Fatalf("Get user = %+v, %v", back, err)
	}
}

// eventually polls cond for up to two seconds: a server notices a closed
// connection asynchronously.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after 2s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisClients returns the flags of the server's connections named name.
func redisClients(ctx context.Context, admin rueidis.Client, name string) ([]string, error) {
	list, err := admin.Do(ctx, admin.B().ClientList().Build()).ToString()
	if err != nil {
		return nil, err
	}
	var flags []string
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(" "+line+" ", " name="+name+" ") {
			continue
		}
		for _, field := range strings.Fields(line) {
			if f, ok := strings.CutPrefix(field, "flags="); ok {
				flags = append(flags, f)
			}
		}
	}
	return flags, nil
}

func TestOpenRedis(t *testing.T) {
	addr := testservers.Redis(t)
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, tc := range []struct {
		cacheTTL string
		tracking bool // connections use RESP3 client tracking
	}{
		{"", true},
		{"30s", true},
		{"off", false},
	} {
		t.Run("cache_ttl="+tc.cacheTTL, func(t *testing.T) {
			ctx := t.Context()
			prefix := testservers.RedisPrefix(t, addr)
			name := uniqueName("cloakroom-test-")
			raw := "redis://" + addr + "/0?prefix=" + url.QueryEscape(prefix) + "&client_name=" + name
			if tc.cacheTTL != "" {
				raw += "&cache_ttl=" + tc.cacheTTL
			}
			st, err := OpenWith(ctx, raw, quietOptions)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					st.Close()
				}
			}()
			if _, ok := st.Sessions.(*redisstore.Store); !ok {
				t.Fatalf("sessions in %T, want *redisstore.Store", st.Sessions)
			}
			roundTrip(t, st)

			// Both stores use the prefix, and only it.
			keys, err := admin.Do(ctx, admin.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
			if err != nil || len(keys) == 0 {
				t.Fatalf("no keys under the prefix: %v", err)
			}
			if !strings.Contains(strings.Join(keys, " "), prefix+"{accounts}:user:alice") {
				t.Errorf("the user is not under the prefix: %q", keys)
			}

			flags, err := redisClients(ctx, admin, name)
			if err != nil || len(flags) == 0 {
				t.Fatalf("no connections named %s: %v", name, err)
			}
			if tracking := strings.Contains(strings.Join(flags, " "), "t"); tracking != tc.tracking {
				t.Errorf("connection flags %q: tracking %v, want %v", flags, tracking, tc.tracking)
			}

			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			closed = true
			eventually(t, "connections released after Close", func() (bool, error) {
				flags, err := redisClients(ctx, admin, name)
				return len(flags) == 0, err
			})
		})
	}
}

// TestOpenRedisPassword runs a server of its own that requires a password.
func TestOpenRedisPassword(t *testing.T) {
	srv := testservers.StartRedis(t)
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	err = admin.Do(t.Context(), admin.B().ConfigSet().ParameterValue().ParameterValue("requirepass", testPassword).Build()).Error()
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}

	st, err := OpenWith(t.Context(), "redis://:"+url.PathEscape(testPassword)+"@"+srv.Addr+"/0", quietOptions)
	if err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	roundTrip(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = OpenWith(t.Context(), "redis://:"+url.PathEscape(testPassword)+"x@"+srv.Addr+"/0", quietOptions)
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("error %q does not say the password is wrong", err)
	}
}

func TestOpenPostgres(t *testing.T) {
	base := testservers.Postgres(t)
	admin, err := pgxpool.New(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, cache := range []string{"", "off", "on"} {
		t.Run("cache="+cache, func(t *testing.T) {
			ctx := t.Context()
			schema := uniqueName("storeurl_test_")
			defer admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			app := uniqueName("cloakroom-test-")
			raw := withQuery(t, base, "schema", schema, "application_name", app)
			if cache != "" {
				raw = withQuery(t, raw, "cache", cache)
			}
			st, err := OpenWith(ctx, raw, quietOptions)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					st.Close()
				}
			}()
			// Network calls get a deadline: the store is wrapped.
			bounded, ok := st.Sessions.(interface{ Unwrap() cloakroom.Store })
			if !ok {
				t.Fatalf("sessions in %T, want a store with per-call timeouts", st.Sessions)
			}
			if _, ok := bounded.Unwrap().(*pgstore.Store); !ok {
				t.Fatalf("sessions in %T, want *pgstore.Store", bounded.Unwrap())
			}
			roundTrip(t, st)

			var tables int
			err = admin.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename IN ('sessions', 'cloakroom_users')", schema).Scan(&tables)
			if err != nil || tables != 2 {
				t.Fatalf("%d of the session and user tables in schema %s (%v)", tables, schema, err)
			}
			// With the cache a connection LISTENs for invalidations (and
			// then sends heartbeats with NOTIFY).
			var listening int
			err = admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND (query ILIKE 'LISTEN%' OR query ILIKE 'NOTIFY%')", app).Scan(&listening)
			if err != nil || (listening > 0) != (cache == "on") {
				t.Errorf("%d listening connections with cache=%q (%v)", listening, cache, err)
			}

			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			closed = true
			eventually(t, "connections released after Close", func() (bool, error) {
				var n int
				err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n)
				return n == 0, err
			})
		})
	}
}

// cuttableProxy forwards TCP connections to a server and can cut them all
// and later listen again on the same port, which is a network outage as a
// gateway sees it: refused connections, then recovery.
type cuttableProxy struct {
	target, addr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *cuttableProxy {
	t.Helper()
	p := &cuttableProxy{target: target, conns: make(map[net.Conn]bool)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cuttableProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.conns[client], p.conns[server] = true, true
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{client, server}, {server, client}} {
				go func() {
					io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				}()
			}
		}
	}()
}

// cut closes the listener and every connection.
func (p *cuttableProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// restore listens again on the same address.
func (p *cuttableProxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestOutageAndRecovery cuts the network between the stores and their
// server: a session check must fail soon, not hang (the gateway then
// answers 503), and work again once the server is back, without reopening.
func TestOutageAndRecovery(t *testing.T) {
	redisAddr := testservers.Redis(t)
	pgURL, err := url.Parse(testservers.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"redis", "postgres", "postgres cache=on"} {
		t.Run(kind, func(t *testing.T) {
			var raw string
			var proxy *cuttableProxy
			switch kind {
			case "redis":
				proxy = startProxy(t, redisAddr)
				raw = "redis://" + proxy.addr + "/0?prefix=" + url.QueryEscape(testservers.RedisPrefix(t, redisAddr))
			default:
				proxy = startProxy(t, pgURL.Host)
				u := *pgURL
				u.Host = proxy.addr
				schema := uniqueName("storeurl_outage_")
				raw = withQuery(t, u.String(), "schema", schema, "connect_timeout", "2")
				if kind == "postgres cache=on" {
					raw = withQuery(t, raw, "cache", "on")
				}
				t.Cleanup(func() {
					admin, err := pgx.Connect(context.Background(), pgURL.String())
					if err == nil {
						admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
						admin.Close(context.Background())
					}
				})
			}
			st, err := OpenWith(t.Context(), raw, quietOptions)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			roundTrip(t, st)
			now := time.Now()
			var key cloakroom.Key
			rand.Read(key[:])
			rec := cloakroom.Record{Key: key, Handle: "h2", UserID: "bob", Version: 1, CreatedAt: now, LastSeen: now,
				IdleTimeout: time.Hour, AbsoluteDeadline: now.Add(2 * time.Hour)}
			if err := st.Sessions.Commit(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ { // cached where the store caches
				if _, found, err := st.Sessions.Find(t.Context(), key); err != nil || !found {
					t.Fatalf("Find before the outage: %v, %v", found, err)
				}
			}

			proxy.cut()
			cutAt := time.Now()
			// A request context has no deadline; the store must give up
			// on its own. Each Find runs aside so that a hanging one fails
			// the test instead of blocking it.
			type outcome struct {
				found bool
				err   error
			}
			for {
				done := make(chan outcome, 1)
				go func() {
					_, found, err := st.Sessions.Find(context.Background(), key)
					done <- outcome{found, err}
				}()
				var o outcome
				select {
				case o = <-done:
				case <-time.After(3*time.Second - time.Since(cutAt)):
					t.Fatal("Find still hangs 3s into the outage")
				}
				if o.err != nil {
					if o.found {
						t.Fatal("Find failed but reported found")
					}
					break
				}
				if time.Since(cutAt) > 3*time.Second {
					t.Fatal("Find still answers 3s into the outage")
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("Find failed %v after the outage began", time.Since(cutAt).Round(time.Millisecond))

			proxy.restore(t)
			eventually(t, "Find works again after the outage", func() (bool, error) {
				_, found, err := st.Sessions.Find(context.Background(), key)
				return err == nil && found, nil
			})
			if _, err := st.Accounts.Get(t.Context(), "alice"); err != nil {
				t.Errorf("account store after the outage: %v", err)
			}
		})
	}
}

// withQuery adds name/value pairs to raw's query.
func withQuery(t *testing.T, raw string, pairs ...string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for i := 0; i < len(pairs); i += 2 {
		q.Set(pairs[i], pairs[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// TestNetworkOpenErrors checks that bad URLs and unreachable servers give
// errors that say what is wrong and never contain the password.
func TestNetworkOpenErrors(t *testing.T) {
	pw := url.PathEscape(testPassword)
	for _, tc := range []struct {
		raw, want string
		invalid   bool // wraps ErrInvalidURL
	}{
		{"redis://:" + pw + "@127.0.0.1:1/0", "connect", false},
		{"redis://u:" + pw + "@127.0.0.1:6379/0?prefx=app:", `unknown option "prefx"`, true},
		{"redis://:" + pw + "@127.0.0.1:6379?cache_ttl=-1s", "cache_ttl", true},
		{"redis://:" + pw + "@127.0.0.1:6379?cache_ttl=soon", "cache_ttl", true},
		{"redis://:" + pw + "@127.0.0.1:6379?cache_lease=2h", "cache_lease", true},
		{"redis://:" + pw + "@127.0.0.1:6379?replica_acks=-1", "replica_acks", true},
		{"redis://:" + pw + "@127.0.0.1:6379?prefix=%7Bapp%7D", "brace", true},
		{"redis://:" + pw + "@127.0.0.1:6379?prefix=a&prefix=b", "given 2 times", true},
		{"rediss://:" + pw + "@127.0.0.1:6379?skip_verify=true", "skip_verify is refused", true},
		{"redis://:" + pw + "@127.0.0.1:6379/zero", "database number", true},
		{"redis://:" + pw + "@127.0.0.1:6379/0#frag", "%23", true},
		{"postgres://u:" + pw + "@127.0.0.1/db?#schema=x", "%23", true},
		{"postgres://u:" + pw + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", "connect", false},
		{"postgres://u@127.0.0.1:1/db?sslmode=disable&connect_timeout=5&password=" + url.QueryEscape(testPassword), "connect", false},
		{"postgres://u:" + pw + "@127.0.0.1/db?cache=maybe", "cache must be on or off", true},
		{"postgres://u:" + pw + "@127.0.0.1/db?schema=" + strings.Repeat("s", 64), "schema", true},
		{"postgres://u:" + pw + "@127.0.0.1/db?sslmode=sometimes", "sslmode", true},
		{"postgres://u:" + pw + "@127.0.0.1/db?connect_timeout=soon&password=" + url.QueryEscape(testPassword), "connect_timeout", true},
	} {
		_, err := OpenWith(t.Context(), tc.raw, quietOptions)
		if err == nil {
			t.Errorf("Open(%s) succeeded", tc.raw)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, testPassword) || strings.Contains(msg, pw) {
			t.Errorf("error shows the password: %s", msg)
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("Open(%s): %q does not say %q", tc.raw, msg, tc.want)
		}
		if errors.Is(err, ErrInvalidURL) != tc.invalid {
			t.Errorf("Open(%s): errors.Is(ErrInvalidURL) = %v, want %v: %v", tc.raw, !tc.invalid, tc.invalid, err)
		}
	}
}

func TestSafeString(t *testing.T) {
	loc, err := Parse("postgres://u:" + testPassword + "@db/x?password=" + testPassword + "2&sslmode=verify-full")
	if err != nil {
		t.Fatal(err)
	}
	got := safeString(loc)
	if strings.Contains(got, testPassword) || !strings.Contains(got, "sslmode=verify-full") {
		t.Errorf("safeString = %s", got)
	}
	wrapped := withoutPasswords(errors.Join(io.EOF, errors.New("bad "+testPassword)), loc)
	if strings.Contains(wrapped.Error(), testPassword) || !errors.Is(wrapped, io.EOF) {
		t.Errorf("withoutPasswords = %v (is EOF: %v)", wrapped, errors.Is(wrapped, io.EOF))
	}
}

func TestPlaintextToRemote(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		warn bool
	}{
		{"redis://127.0.0.1:6379", false},
		{"redis://localhost:6379", false},
		{"redis://[::1]:6379", false},
		{"redis://cache.internal:6379", true},
		{"redis://10.0.0.5:6379", true},
		{"rediss://cache.internal:6379", false},
		{"postgres://db.internal/x?sslmode=verify-full", false},
		{"postgres://db.internal/x?sslmode=verify-ca", false},
		{"postgres://db.internal/x?sslmode=require", true},
		{"postgres://db.internal/x?sslmode=prefer", true},
		{"postgres://db.internal/x", true},
		{"postgres://127.0.0.1/x?sslmode=disable", false},
	} {
		loc, err := Parse(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		encrypted := loc.URL.Scheme == "rediss"
		if loc.Kind == "postgres" {
			cfg, _, err := parsePostgres(loc)
			if err != nil {
				t.Fatal(err)
			}
			encrypted = verifiedTLS(cfg)
		}
		if got := plaintextToRemote(loc, encrypted); got != tc.warn {
			t.Errorf("%s: warn = %v, want %v", tc.raw, got, tc.warn)
		}
	}
}

func TestParseRedisOptions(t *testing.T) {
	loc, err := Parse("rediss://user:" + testPassword + "@cache.internal:6380/2?prefix=app:&cache_ttl=15s&dial_timeout=3s&client_name=gw&cache_lease=400ms&replica_acks=1")
	if err != nil {
		t.Fatal(err)
	}
	opt, set, err := parseRedis(loc)
	if err != nil {
		t.Fatal(err)
	}
	if set.prefix != "app:" || set.cacheTTL != 15*time.Second || set.cacheLease != 400*time.Millisecond || set.replicaAcks != 1 {
		t.Errorf("settings %+v", set)
	}
	if opt.InitAddress[0] != "cache.internal:6380" || opt.SelectDB != 2 || opt.Username != "user" || opt.Password != testPassword ||
		opt.TLSConfig == nil || opt.TLSConfig.ServerName != "cache.internal" || opt.Dialer.Timeout != 3*time.Second ||
		opt.ClientName != "gw" || opt.DisableCache {
		t.Errorf("client options %+v", opt)
	}
	for raw, want := range map[string]time.Duration{
		"redis://h:1":               0,
		"redis://h:1/":              0,
		"redis://h:1?cache_ttl=0":   0,
		"redis://h:1?cache_ttl=off": -1,
	} {
		loc, _ := Parse(raw)
		opt, set, err := parseRedis(loc)
		if err != nil || set.cacheTTL != want || set.prefix != redisstore.DefaultPrefix || opt.DisableCache != (want < 0) {
			t.Errorf("%s: %+v, DisableCache %v, %v", raw, set, opt.DisableCache, err)
		}
	}
}

func TestParsePostgresOptions(t *testing.T) {
	loc, err := Parse("postgresql://gw:" + testPassword + "@db.internal:5433/app?sslmode=verify-full&schema=Sessions&cache=on&cache_lease=400ms&pool_max_conns=7&application_name=gw")
	if err != nil {
		t.Fatal(err)
	}
	cfg, set, err := parsePostgres(loc)
	if err != nil {
		t.Fatal(err)
	}
	if set.schema != "Sessions" || !set.cache || set.cacheLease != 400*time.Millisecond {
		t.Errorf("settings %+v", set)
	}
	cc := cfg.ConnConfig
	if cc.Host != "db.internal" || cc.Port != 5433 || cc.Database != "app" || cc.User != "gw" || cc.Password != testPassword ||
		cfg.MaxConns != 7 || cc.ConnectTimeout != postgresConnectTimeout || cc.RuntimeParams["application_name"] != "gw" {
		t.Errorf("pool config: %+v %+v", cfg, cc)
	}
	for _, p := range []string{"schema", "cache", "cache_lease"} {
		if _, ok := cc.RuntimeParams[p]; ok {
			t.Errorf("our option %s reached the server as a runtime parameter", p)
		}
	}
	loc, _ = Parse("postgres://h/db")
	if _, set, err := parsePostgres(loc); err != nil || set.schema != "cloakroom" || set.cache || set.cacheLease != 0 {
		t.Errorf("defaults: %+v, %v", set, err)
	}
	for _, lease := range []string{"50ms", "2m", "soon", "1s&cache_lease=2s"} {
		loc, _ := Parse("postgres://h/db?cache=on&cache_lease=" + lease)
		if _, _, err := parsePostgres(loc); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("cache_lease=%s: %v, want ErrInvalidURL", lease, err)
		}
	}
}

// fuzzURL builds a URL with testPassword in it around fuzzed parts, or
// reports false if a part holds the password itself (an error quoting that
// part would then look like a leak).
func fuzzURL(scheme, host, path, query string) (string, bool) {
	for _, part := range []string{host, path, query} {
		if strings.Contains(part, testPassword) || strings.Contains(part, "hunter2") {
			return "", false
		}
	}
	return scheme + "://user:" + url.PathEscape(testPassword) + "@" + host + path + "?" + query, true
}

func FuzzParseRedis(f *testing.F) {
	for _, s := range [][3]string{
		{"127.0.0.1:6379", "/0", "prefix=app:&cache_ttl=30s"},
		{"h", "", "cache_ttl=off"},
		{"h:1", "/x", "prefix=%7B"},
		{"h", "/1/2", "addr=h2:1&addr=h3&db=3"},
		{"[::1]:6379", "/", "skip_verify=1&dial_timeout=zz"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, host, path, query string) {
		raw, ok := fuzzURL("redis", host, path, query)
		if !ok {
			return
		}
		loc, err := Parse(raw)
		if err != nil {
			return // Parse has its own fuzz target
		}
		opt, set, err := parseRedis(loc)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("parseRedis(%q): %v does not wrap ErrInvalidURL", raw, err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatalf("parseRedis(%q) error shows the password: %v", raw, err)
			}
			return
		}
		if set.prefix == "" || strings.ContainsAny(set.prefix, "{}") || set.cacheTTL < -1 {
			t.Fatalf("parseRedis(%q) settings %+v", raw, set)
		}
		if len(opt.InitAddress) == 0 || opt.DisableCache != (set.cacheTTL < 0) {
			t.Fatalf("parseRedis(%q) options %+v", raw, opt)
		}
		if opt.TLSConfig != nil && opt.TLSConfig.InsecureSkipVerify {
			t.Fatalf("parseRedis(%q) turned TLS verification off", raw)
		}
	})
}

func FuzzParsePostgres(f *testing.F) {
	for _, s := range [][3]string{
		{"127.0.0.1:5432", "/test", "sslmode=disable&schema=x&cache=on"},
		{"db", "/app", "pool_max_conns=0"},
		{"db", "", "schema=" + strings.Repeat("a", 70)},
		{"db:bad", "/x", "cache=1&connect_timeout=-3"},
		{"db", "/x", "password=%zz"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, host, path, query string) {
		raw, ok := fuzzURL("postgres", host, path, query)
		if !ok {
			return
		}
		loc, err := Parse(raw)
		if err != nil {
			return
		}
		cfg, set, err := parsePostgres(loc)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("parsePostgres(%q): %v does not wrap ErrInvalidURL", raw, err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatalf("parsePostgres(%q) error shows the password: %v", raw, err)
			}
			return
		}
		if set.schema == "" || len(set.schema) > maxPostgresIdentifier || cfg.ConnConfig.ConnectTimeout <= 0 ||
			(set.cacheLease != 0 && (set.cacheLease < 100*time.Millisecond || set.cacheLease > time.Minute)) {
			t.Fatalf("parsePostgres(%q) = %+v, timeout %v", raw, set, cfg.ConnConfig.ConnectTimeout)
		}
		if _, ok := cfg.ConnConfig.RuntimeParams["schema"]; ok {
			t.Fatalf("parsePostgres(%q) sends schema to the server", raw)
		}
	})
}
