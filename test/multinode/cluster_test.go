package multinode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/pgstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

const (
	userName     = "alice"
	userPassword = "correct horse battery staple"
	cookieName   = cloakroom.DefaultCookieName
)

// quiet swallows the logs of gateways, managers and stores: hundreds of
// logins and logouts would drown the test output.
var quiet = slog.New(slog.DiscardHandler)

// passwordHash is computed once per test binary: an argon2id hash at the
// production parameters takes about 0.1 s under the race detector.
var passwordHash = sync.OnceValue(func() string {
	h, err := accounts.HashPassword(userPassword, accounts.DefaultParams())
	if err != nil {
		panic(err)
	}
	return h
})

// nodeStore is one node's own store client: its own connections, and with
// them its own cache.
type nodeStore struct {
	store cloakroom.Store
	// trips counts the store round trips the node made; answers served
	// from a client-side cache are not counted. Nil where the harness
	// cannot count them.
	trips *atomic.Int64
	close func()
}

// variant is one way of sharing sessions between nodes.
type variant struct {
	name string
	// cached is true when a node answers session checks from its own
	// memory and learns of other nodes' changes by messages (Redis
	// tracking pushes, NOTIFY).
	cached bool
	// strict is true when the store promises that once a revocation
	// (logout, bump) returns, no node accepts the session any more: the
	// tests then fail on a single request accepted after the logout
	// response. Otherwise they report such requests, and fail only past
	// the asynchronous window's bounds.
	strict bool
	// checks and returns say, for the report, where a node checks a
	// session and when a revocation returns.
	checks, returns string
	// open prepares the shared store for one test.
	open func(t *testing.T) storeSetup
}

// storeSetup is a shared store ready for one test.
type storeSetup struct {
	// addr is the store's host:port, for tests that put a proxy before it.
	addr string
	// node opens one node's own client, connecting to addr: the store's
	// or a proxy's in front of it.
	node func(t *testing.T, addr string) nodeStore
	// probe, when not nil, listens to the store's invalidation messages
	// on a connection of its own, to time their delivery.
	probe func(t *testing.T) *notifyProbe
}

// variants are the shared stores every multi-node test runs against. To
// point the tests at other servers (a Redis Cluster, a remote
// PostgreSQL), add a variant whose open returns redisSetup with the
// cluster's seed addresses, or postgresSetup with another URL.
func variants() []variant {
	return []variant{
		{name: "redis", cached: true, strict: true, open: openRedis,
			checks: "node's cache, under a lease", returns: "after every caching node acknowledged it, or a lease"},
		{name: "postgres", cached: false, strict: true, open: func(t *testing.T) storeSetup { return openPostgres(t, false) },
			checks: "a query", returns: "after the commit"},
		{name: "postgres-cache", cached: true, strict: true, open: func(t *testing.T) storeSetup { return openPostgres(t, true) },
			checks: "node's cache, under a lease", returns: "after every caching node dropped it, or a lease"},
		{name: "sqlite-shared-file", cached: false, strict: true, open: openSQLite,
			checks: "node's cache, checked against the file's write counter", returns: "after the commit"},
	}
}

func openRedis(t *testing.T) storeSetup {
	t.Helper()
	addr := testservers.Redis(t)
	return redisSetup(t, addr, testservers.RedisPrefix(t, addr))
}

// redisSetup shares the Redis server at addr under prefix. Further seed
// addresses make each node's client a Redis Cluster client.
func redisSetup(t *testing.T, addr, prefix string, seeds ...string) storeSetup {
	t.Helper()
	return storeSetup{addr: addr, node: func(t *testing.T, addr string) nodeStore {
		t.Helper()
		opts := redisOptions(addr)
		opts.InitAddress = append(opts.InitAddress, seeds...)
		client, err := rueidis.NewClient(opts)
		if err != nil {
			t.Fatalf("rueidis client for %s: %v", addr, err)
		}
		counted := &countingClient{Client: client}
		store, err := redisstore.New(counted, redisstore.Config{Prefix: prefix})
		if err != nil {
			client.Close()
			t.Fatal(err)
		}
		return nodeStore{store: store, trips: &counted.trips, close: client.Close}
	}}
}

// redisOptions is how the tests build a node's rueidis client: the library
// defaults (client-side caching on), except that a command is not retried
// after a network error. With rueidis' default retries, and no deadline on
// the request context (neither the manager nor the gateway sets one), a
// session check during an outage does not fail: it waits, retrying at most
// 1 s apart, until Redis is back or the client gives up. Fail-closed still
// holds (no 200), but the client gets no 503, only a hung request.
func redisOptions(addr string) rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:  []string{addr},
		DisableRetry: true,
		// Quick reconnects keep the recovery measurement about the gateway,
		// not about a dial timeout.
		Dialer: netDialer(time.Second),
	}
}

// countingClient counts the commands a rueidis client sends to Redis;
// answers served from the client-side cache are not counted.
type countingClient struct {
	rueidis.Client
	trips atomic.Int64
}

func (c *countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	c.trips.Add(1)
	return c.Client.Do(ctx, cmd)
}

func (c *countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	c.trips.Add(1)
	return c.Client.DoMulti(ctx, cmds...)
}

func (c *countingClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	res := c.Client.DoCache(ctx, cmd, ttl)
	if !res.IsCacheHit() {
		c.trips.Add(1)
	}
	return res
}

func (c *countingClient) DoMultiCache(ctx context.Context, cmds ...rueidis.CacheableTTL) []rueidis.RedisResult {
	res := c.Client.DoMultiCache(ctx, cmds...)
	for _, r := range res {
		if !r.IsCacheHit() {
			c.trips.Add(1)
			break
		}
	}
	return res
}

func openPostgres(t *testing.T, cache bool) storeSetup {
	t.Helper()
	url := testservers.Postgres(t)
	return postgresSetup(t, url, cache)
}

// postgresSetup shares the database at url in a schema of the test's own,
// dropped when the test ends.
func postgresSetup(t *testing.T, url string, cache bool) storeSetup {
	t.Helper()
	base, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	schema := "multinode_" + randomHex(6)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, base.ConnConfig.Copy())
		if err != nil {
			t.Logf("dropping schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("dropping schema %s: %v", schema, err)
		}
	})
	serverAddr := fmt.Sprintf("%s:%d", base.ConnConfig.Host, base.ConnConfig.Port)
	var probe func(t *testing.T) *notifyProbe
	if cache {
		probe = func(t *testing.T) *notifyProbe { return startNotifyProbe(t, base.ConnConfig, pgNotifyChannel(schema)) }
	}
	return storeSetup{addr: serverAddr, probe: probe, node: func(t *testing.T, addr string) nodeStore {
		t.Helper()
		cfg := base.Copy()
		host, port := splitHostPort(t, addr)
		cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, port
		cfg.ConnConfig.Fallbacks = nil
		// A dial through the fault tests' proxy gives up within a second,
		// so that it does not outlast the fault; one to the server itself
		// waits longer: PostgreSQL starts a process per connection, which
		// on a loaded 2-core machine can take more than a second.
		cfg.ConnConfig.ConnectTimeout = time.Second
		if addr == serverAddr {
			cfg.ConnConfig.ConnectTimeout = 10 * time.Second
		}
		// Room for every request of the fault tests (load and probes) to
		// hold a connection of its own, so none waits for a pool slot.
		cfg.MaxConns = 16
		tracer := &queryCounter{}
		cfg.ConnConfig.Tracer = tracer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		store, err := pgstore.New(ctx, pool, pgstore.Config{Schema: schema, Cache: cache, PurgeInterval: -1, Logger: quiet})
		if err != nil {
			pool.Close()
			t.Fatal(err)
		}
		return nodeStore{store: store, trips: &tracer.queries, close: func() { store.Close(); pool.Close() }}
	}}
}

// openSQLite shares one SQLite file between the nodes, each with a Store
// of its own, as gateways (or a gateway and the CLI) on one host would.
func openSQLite(t *testing.T) storeSetup {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessions.db")
	return storeSetup{node: func(t *testing.T, _ string) nodeStore {
		t.Helper()
		store, err := sqlitestore.Open(context.Background(), path, sqlitestore.Config{PurgeInterval: -1, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return nodeStore{store: store, close: func() { store.Close() }}
	}}
}

// queryCounter counts the queries of a pgx pool, each one round trip.
type queryCounter struct{ queries atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.queries.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// upstream is the API behind every gateway: it answers with the user the
// gateway vouched for, and counts what reached it.
type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"user": r.Header.Get("X-Forwarded-User"), "path": r.URL.Path})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// node is one gateway with its own store client, manager and accounts.
type node struct {
	name    string
	store   nodeStore
	manager *cloakroom.Manager
	gw      *gateway.Gateway
	srv     *httptest.Server
	// app is an application of the node's own on its manager, beside the
	// gateway: POST / logs a user in, as the gateway's login does after
	// the password check, and answers the CSRF token (runs that need
	// hundreds of sessions use it to skip a password hash per session);
	// POST /anonymous starts an anonymous session and GET /anonymous
	// answers its value, 401 without one.
	app *httptest.Server
	// admin serves the gateway's admin API, when it has a token.
	admin *httptest.Server
	// warnings holds what the node's manager and gateway logged at
	// warning level and above (a store error behind a 503, say).
	warnings  syncbuf.Buffer
	transport *http.Transport // to the upstream
	panics    atomic.Int64
	closeOnce sync.Once
}

// anonymousValue names the value of the node's anonymous sessions.
const anonymousValue = "cart"

func newNode(t *testing.T, name string, store nodeStore, api *upstream) *node {
	t.Helper()
	return newNodeWith(t, name, store, api, nil)
}

// newNodeWith is newNode with the ways in of in besides the local
// account, when in is not nil.
func newNodeWith(t *testing.T, name string, store nodeStore, api *upstream, in *signIns) *node {
	t.Helper()
	n := &node{name: name, store: store}
	logger := slog.New(slog.NewTextHandler(&n.warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	n.manager, err = cloakroom.New(cloakroom.Config{Store: store.store, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	users := memaccounts.New()
	now := time.Now()
	err = users.Create(context.Background(), accounts.Record{
		User:         accounts.User{Name: userName, Email: userName + "@example.com", Roles: []string{"dev"}, CreatedAt: now, PasswordChangedAt: now},
		PasswordHash: passwordHash(),
	})
	if err != nil {
		t.Fatal(err)
	}
	service := accounts.New(users, accounts.Config{RevokeSessions: n.manager.RevokeUser, Throttle: memaccounts.NewThrottle(0), Logger: quiet})
	route, err := proxy.ParseRoute("/api/=" + api.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	routes := []proxy.Route{route}
	if in != nil {
		routes = append(routes, in.routes(t)...)
	}
	admission, err := signin.New(signin.Config{Sessions: n.manager, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// Listening before the gateway is built: an OpenID client needs the
	// gateway's address for its redirect URI.
	n.srv = httptest.NewUnstartedServer(nil)
	cfg := gateway.Config{Sessions: n.manager, Admission: admission, Accounts: service, Logger: logger}
	if in != nil {
		in.configure(t, &cfg, "http://"+n.srv.Listener.Addr().String())
		if err := proxy.SetModes(routes, cfg.Vault.Modes()); err != nil {
			t.Fatal(err)
		}
	}
	n.transport = proxy.NewTransport()
	cfg.Routes, cfg.Transport = routes, n.transport
	n.gw, err = gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.srv.Config.Handler = n.recoverPanics(n.gw.Handler())
	n.srv.Start()
	if cfg.AdminToken != "" {
		n.admin = httptest.NewServer(n.gw.AdminHandler())
	}
	app := http.NewServeMux()
	app.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := n.manager.Session(r)
		if err := s.Login(r.Context(), userName, cloakroom.LoginOptions{}); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.PutJSON("roles", []string{"dev"})
		s.Put("email", userName+"@example.com")
		io.WriteString(w, s.CSRFToken())
	})
	app.HandleFunc("POST /anonymous", func(w http.ResponseWriter, r *http.Request) {
		value := randomHex(8)
		n.manager.Session(r).Put(anonymousValue, value)
		io.WriteString(w, value)
	})
	app.HandleFunc("GET /anonymous", func(w http.ResponseWriter, r *http.Request) {
		s := n.manager.Session(r)
		switch value := s.GetString(anonymousValue); {
		case s.Err() != nil:
			http.Error(w, s.Err().Error(), http.StatusServiceUnavailable)
		case value == "":
			http.Error(w, "no anonymous session", http.StatusUnauthorized)
		default:
			io.WriteString(w, value)
		}
	})
	n.app = httptest.NewServer(n.manager.Handler(app))
	t.Cleanup(n.close)
	return n
}

// recoverPanics counts handler panics, which net/http would otherwise
// swallow, and answers them with a 500 the tests notice.
func (n *node) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				n.panics.Add(1)
				http.Error(w, fmt.Sprintf("panic: %v", v), http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// close shuts the node down: listeners, gateway, upstream connections and
// store client.
func (n *node) close() {
	n.closeOnce.Do(func() {
		n.srv.Close()
		n.app.Close()
		if n.admin != nil {
			n.admin.Close()
		}
		n.gw.Close()
		n.transport.CloseIdleConnections()
		n.store.close()
	})
}

// cluster is three nodes sharing one store.
type cluster struct {
	setup   storeSetup
	api     *upstream
	a, b, c *node
}

func newCluster(t *testing.T, v variant) *cluster {
	t.Helper()
	return newClusterWith(t, v, nil)
}

// newClusterWith is newCluster with the ways in of in, when not nil.
func newClusterWith(t *testing.T, v variant, in *signIns) *cluster {
	t.Helper()
	setup := v.open(t)
	api := newUpstream(t)
	cl := &cluster{setup: setup, api: api}
	cl.a = newNodeWith(t, "A", setup.node(t, setup.addr), api, in)
	cl.b = newNodeWith(t, "B", setup.node(t, setup.addr), api, in)
	cl.c = newNodeWith(t, "C", setup.node(t, setup.addr), api, in)
	return cl
}

func (cl *cluster) nodes() []*node { return []*node{cl.a, cl.b, cl.c} }

// client sends requests the way a browser's same-origin fetch does, with
// the session cookie set by hand: the cookie is __Host- and Secure, which
// a cookie jar would not send over plain HTTP.
type client struct {
	http *http.Client
	// apiOK counts API requests answered 200, each of which the upstream
	// must have seen.
	apiOK atomic.Int64
}

func newClient(t *testing.T) *client {
	t.Helper()
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	c := &client{http: &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

func (c *client) closeIdle() { c.http.Transport.(*http.Transport).CloseIdleConnections() }

// reply is a response read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (c *client) do(method, url, token string, body io.Reader, header ...string) (reply, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	if token != "" {
		req.Header.Set("Cookie", cookieName+"="+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// login logs in through the gateway's JSON endpoint and returns the session
// token from the cookie and the CSRF token.
func (c *client) login(t *testing.T, n *node) (token, csrf string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": userName, "password": userPassword})
	r, err := c.do(http.MethodPost, n.srv.URL+"/auth/login", "", strings.NewReader(string(body)), "Content-Type", "application/json")
	if err != nil {
		t.Fatalf("login through %s: %v", n.name, err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("login through %s: status %d: %s", n.name, r.status, r.body)
	}
	var answer struct {
		User string `json:"user"`
		CSRF string `json:"csrf_token"`
	}
	if err := json.Unmarshal(r.body, &answer); err != nil || answer.User != userName || answer.CSRF == "" {
		t.Fatalf("login through %s answered %s (%v)", n.name, r.body, err)
	}
	token = cookieToken(r.header)
	if token == "" {
		t.Fatalf("login through %s set no session cookie", n.name)
	}
	return token, answer.CSRF
}

// mint starts a session through n's manager without a password check.
func (c *client) mint(n *node) (token, csrf string, err error) {
	r, err := c.do(http.MethodPost, n.app.URL, "", nil)
	if err != nil {
		return "", "", err
	}
	if r.status != http.StatusOK {
		return "", "", fmt.Errorf("mint through %s: status %d: %s", n.name, r.status, r.body)
	}
	token = cookieToken(r.header)
	if token == "" {
		return "", "", fmt.Errorf("mint through %s set no session cookie", n.name)
	}
	return token, string(r.body), nil
}

// whoami asks n's API route who the session belongs to. It returns the
// status and, for a 200, the user the upstream was told about.
func (c *client) whoami(n *node, token string) (int, string, error) {
	r, err := c.do(http.MethodGet, n.srv.URL+"/api/whoami", token, nil)
	if err != nil {
		return 0, "", err
	}
	if r.status != http.StatusOK {
		return r.status, "", nil
	}
	c.apiOK.Add(1)
	var answer struct {
		User string `json:"user"`
	}
	if err := json.Unmarshal(r.body, &answer); err != nil {
		return r.status, "", fmt.Errorf("upstream answer %q: %w", r.body, err)
	}
	return r.status, answer.User, nil
}

// logout ends the session through n, as the SPA's logout button does.
func (c *client) logout(n *node, token, csrf string) (reply, error) {
	return c.do(http.MethodPost, n.srv.URL+"/auth/logout", token, nil, cloakroom.CSRFHeader, csrf)
}

// cookieToken returns the session token a response sets, "" if none.
func cookieToken(h http.Header) string { return cookieValue(h, cookieName) }

// cookieValue returns the value of the cookie name a response sets, "" if
// none.
func cookieValue(h http.Header, name string) string {
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == name {
			return c.Value
		}
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
