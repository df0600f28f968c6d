package gatewaybench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/accounts/sqliteaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/testservers"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/redisstore"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

var (
	loadTime    = flag.Duration("loadtime", 0, "run TestLoad for about this long per target; 0 skips it")
	loadClients = flag.Int("loadclients", 32, "concurrent clients in TestLoad")
	loadStore   = flag.String("loadstore", "sqlite", "session store of the gateway in TestLoad: sqlite (the default, cached) or redis (client-side cache)")
)

// Parallelism of the Go benchmark: goroutines per GOMAXPROCS.
const benchParallelism = 16

const (
	benchUser     = "bench"
	benchPassword = "a benchmark password"
	upstreamBody  = `{"ok":true,"items":[1,2,3]}`
)

// target is one way to reach the upstream.
type target struct {
	name   string
	url    string // full URL of the API request
	cookie string
	client *http.Client
}

// do sends one authenticated request and reads the whole answer.
func (t *target) do(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Cookie", t.cookie)
	req.Header.Set("Accept", "application/json")
	res, err := t.client.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	switch {
	case err != nil:
		return err
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: status %d", t.name, res.StatusCode)
	case n != int64(len(upstreamBody)):
		return fmt.Errorf("%s: %d bytes, want %d", t.name, n, len(upstreamBody))
	}
	return nil
}

// rig is the upstream, the gateway in front of it and a plain reverse proxy
// in front of it, all on loopback.
type rig struct {
	gateway, plain *target
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// clientTransport keeps enough idle connections for every concurrent
// client, so that neither side pays for new connections.
func clientTransport(tb testing.TB) *http.Transport {
	t := &http.Transport{
		MaxIdleConns:        2048,
		MaxIdleConnsPerHost: 2048,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	tb.Cleanup(t.CloseIdleConnections)
	return t
}

// serveLoopback serves h on a free loopback port until the test ends.
func serveLoopback(tb testing.TB, h http.Handler) *url.URL {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go srv.Serve(l)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &url.URL{Scheme: "http", Host: l.Addr().String()}
}

// gatewayStores opens the session store and the account store the gateway
// runs on, as `cloakroom serve --store` does: "sqlite" keeps both in one
// file; "redis" keeps sessions in Redis (with its client-side cache) and
// accounts in memory, which the benchmark never reads after the login.
func gatewayStores(tb testing.TB, kind string) (cloakroom.Store, accounts.Store) {
	tb.Helper()
	ctx := context.Background()
	switch kind {
	case "sqlite":
		store, err := sqlitestore.Open(ctx, filepath.Join(tb.TempDir(), "bench.db"), sqlitestore.Config{Logger: discardLogger()})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { store.Close() })
		users, err := sqliteaccounts.New(ctx, store.DB())
		if err != nil {
			tb.Fatal(err)
		}
		return store, users
	case "redis":
		addr := testservers.Redis(tb)
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(client.Close)
		store, err := redisstore.New(client, redisstore.Config{Prefix: testservers.RedisPrefix(tb, addr)})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { store.Close() })
		return store, memaccounts.New()
	}
	tb.Fatalf("unknown store %q: want sqlite or redis", kind)
	return nil, nil
}

func newRig(tb testing.TB, storeKind string) *rig {
	tb.Helper()
	ctx := context.Background()

	upstream := serveLoopback(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, upstreamBody)
	}))

	// The gateway, wired as `cloakroom serve` wires it.
	store, users := gatewayStores(tb, storeKind)
	sessions, err := cloakroom.New(cloakroom.Config{Store: store, Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	accts := accounts.New(users, accounts.Config{RevokeSessions: sessions.RevokeUser, Throttle: memaccounts.NewThrottle(0), Logger: discardLogger()})
	if err := accts.Add(ctx, benchUser, benchPassword, []string{"user"}, ""); err != nil {
		tb.Fatal(err)
	}
	route, err := proxy.ParseRoute("/api/=" + upstream.String())
	if err != nil {
		tb.Fatal(err)
	}
	admission, err := signin.New(signin.Config{Sessions: sessions, Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{Sessions: sessions, Admission: admission, Accounts: accts, Routes: []proxy.Route{route}, Logger: discardLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { gw.Close() })
	gatewayURL := serveLoopback(tb, gw.Handler())

	// The baseline: a plain reverse proxy with a transport tuned the same
	// way, no sessions.
	plainTransport := http.DefaultTransport.(*http.Transport).Clone()
	plainTransport.Proxy = nil
	plainTransport.MaxIdleConns = 1024
	plainTransport.MaxIdleConnsPerHost = 256
	plainTransport.DisableCompression = true
	plainTransport.ForceAttemptHTTP2 = false
	tb.Cleanup(plainTransport.CloseIdleConnections)
	plainURL := serveLoopback(tb, &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport: plainTransport,
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	})

	gwClient := &http.Client{Transport: clientTransport(tb), Timeout: 30 * time.Second}
	cookie := login(tb, gwClient, gatewayURL.String())
	r := &rig{
		gateway: &target{name: "gateway", url: gatewayURL.String() + "/api/items", cookie: cookie, client: gwClient},
		plain:   &target{name: "reverseproxy", url: plainURL.String() + "/api/items", cookie: cookie, client: &http.Client{Transport: clientTransport(tb), Timeout: 30 * time.Second}},
	}
	for _, t := range []*target{r.gateway, r.plain} {
		if err := t.do(ctx); err != nil {
			tb.Fatalf("first request: %v", err)
		}
	}
	return r
}

func login(tb testing.TB, c *http.Client, base string) string {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"username": benchUser, "password": benchPassword})
	res, err := c.Post(base+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return sessionCookie(tb, res, "login")
}

// sessionCookie returns the session cookie res sets, as a Cookie header
// value.
func sessionCookie(tb testing.TB, res *http.Response, step string) string {
	tb.Helper()
	for _, ck := range res.Cookies() {
		if ck.Name == cloakroom.DefaultCookieName && ck.Value != "" {
			return ck.Name + "=" + ck.Value
		}
	}
	tb.Fatalf("%s: status %d and no session cookie", step, res.StatusCode)
	return ""
}

// BenchmarkAuthenticatedRequest measures, in one run, the same
// authenticated GET through the gateway and through the plain reverse
// proxy, each on its own (req/s), then both interleaved: every client
// alternates between the two, so background load on the machine hits both
// alike, and the ratio of their mean latencies is the throughput ratio
// gateway/proxy (under a CPU-bound closed loop each request's latency is
// proportional to the work it costs).
func BenchmarkAuthenticatedRequest(b *testing.B) {
	r := newRig(b, "sqlite")
	for _, t := range []*target{r.gateway, r.plain} {
		b.Run(t.name, func(b *testing.B) {
			failures := &failureCount{}
			b.SetParallelism(benchParallelism)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					failures.note(t.do(ctx))
				}
			})
			b.StopTimer()
			failures.check(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		mean := interleave(b, r.gateway, r.plain)
		if mean == nil {
			return
		}
		gw, plain := mean[0], mean[1]
		b.ReportMetric(gw/1e3, "gateway-µs/req")
		b.ReportMetric(plain/1e3, "proxy-µs/req")
		b.ReportMetric(plain/gw, "gateway/proxy")
	})
}

// interleave sends b.N requests from parallel clients, each alternating
// over targets so background load on the machine hits all alike, and
// returns each target's mean latency in nanoseconds, or nil when b.N was
// too small for every target to get a request.
func interleave(b *testing.B, targets ...*target) []float64 {
	failures := &failureCount{}
	spent := make([]atomic.Int64, len(targets)) // nanoseconds spent waiting for each target
	count := make([]atomic.Int64, len(targets))
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for i := 0; pb.Next(); i++ {
			t := i % len(targets)
			start := time.Now()
			failures.note(targets[t].do(ctx))
			spent[t].Add(int64(time.Since(start)))
			count[t].Add(1)
		}
	})
	b.StopTimer()
	failures.check(b)
	mean := make([]float64, len(targets))
	for i := range targets {
		if count[i].Load() == 0 {
			return nil
		}
		mean[i] = float64(spent[i].Load()) / float64(count[i].Load())
	}
	b.ReportMetric(0, "ns/op")
	return mean
}

// failureCount counts failed requests from many goroutines.
type failureCount struct {
	n     atomic.Int64
	first atomic.Value
}

func (f *failureCount) note(err error) {
	if err != nil {
		f.n.Add(1)
		f.first.CompareAndSwap(nil, err)
	}
}

func (f *failureCount) check(b *testing.B) {
	if n := f.n.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed, first: %v", n, b.N, f.first.Load())
	}
}

// load sends requests from clients goroutines for d and returns how many
// succeeded.
func load(t *target, clients int, d time.Duration) (ok, failed int64, firstErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var okN, failN atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := t.do(ctx)
				switch {
				case err == nil:
					okN.Add(1)
				case ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
					// cut off by the end of the round
				default:
					failN.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	return okN.Load(), failN.Load(), firstErr
}

// TestLoad is the bounded-time load runner: it alternates one-second rounds
// against the gateway and the plain proxy (so machine noise hits both
// alike) for about -loadtime each, and prints both throughputs and their
// ratio.
func TestLoad(t *testing.T) {
	if *loadTime <= 0 {
		t.Skip("load runner: pass -loadtime=10s (and -v to see the figures)")
	}
	r := newRig(t, *loadStore)
	round := min(time.Second, *loadTime)
	rounds := max(1, int(*loadTime/round))
	// Warm both paths: connection pools, SQLite page cache.
	load(r.gateway, *loadClients, 300*time.Millisecond)
	load(r.plain, *loadClients, 300*time.Millisecond)

	var counts [2]int64
	var elapsed [2]time.Duration
	for range rounds {
		for i, target := range []*target{r.gateway, r.plain} {
			start := time.Now()
			ok, failed, err := load(target, *loadClients, round)
			elapsed[i] += time.Since(start)
			counts[i] += ok
			if failed > 0 {
				t.Fatalf("%s: %d requests failed, first: %v", target.name, failed, err)
			}
		}
	}
	gwRPS := float64(counts[0]) / elapsed[0].Seconds()
	plainRPS := float64(counts[1]) / elapsed[1].Seconds()
	ratio := gwRPS / plainRPS
	verdict := "meets"
	if ratio < 1 {
		verdict = "misses"
	}
	t.Logf("%d clients, %d × %v rounds per target", *loadClients, rounds, round)
	t.Logf("gateway (%s sessions + proxy): %8.0f req/s", *loadStore, gwRPS)
	t.Logf("plain httputil.ReverseProxy:       %8.0f req/s", plainRPS)
	t.Logf("ratio gateway/proxy:               %8.3f (%s the 1.0 target)", ratio, verdict)
}

// TestRigAnswers keeps the benchmark honest in ordinary test runs: both
// paths answer the authenticated request, and only the gateway refuses it
// without a session.
func TestRigAnswers(t *testing.T) {
	r := newRig(t, "sqlite")
	ctx := t.Context()
	for _, target := range []*target{r.gateway, r.plain} {
		if err := target.do(ctx); err != nil {
			t.Errorf("%s: %v", target.name, err)
		}
	}
	anonymous := *r.gateway
	anonymous.cookie = "other=1"
	if err := anonymous.do(ctx); err == nil {
		t.Error("the gateway served the API without a session")
	}
}
