package forwardauthbench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/testoidc"
	"github.com/cloakroom/cloakroom/internal/testservers"
)

var (
	requests     = flag.Int("fwd.requests", 0, "requests per target in TestForwardAuthPeers; 0 skips it")
	concurrency  = flag.Int("fwd.concurrency", 32, "concurrent clients per target")
	rounds       = flag.Int("fwd.rounds", 10, "rounds the requests are split into; the targets take turns each round")
	oauth2Proxy  = flag.String("fwd.oauth2-proxy", "", "oauth2-proxy binary (bench/forwardauth/build-oauth2-proxy.sh builds it); empty measures cloakroom and nginx alone")
	cloakroomBin = flag.String("fwd.cloakroom", "", "cloakroom binary; empty builds ./cmd/cloakroom into a temporary folder")
)

// The targets' names.
const (
	cloakroomRedis    = "nginx+cloakroom(redis)"
	cloakroomSQLite   = "nginx+cloakroom(sqlite)"
	oauth2ProxyCookie = "nginx+oauth2-proxy(cookie)"
	oauth2ProxyRedis  = "nginx+oauth2-proxy(redis)"
)

// The CPU target of the issue: a cloakroom decision costs its process at
// most a third of what one costs oauth2-proxy's.
const cpuTarget = 1.0 / 3

const (
	benchUser     = "bench"
	benchEmail    = "bench@example.com"
	benchPassword = "a benchmark password nobody guesses"
	appBody       = `{"ok":true,"items":[1,2,3]}`
)

// target is one nginx in front of the app, with or without an auth
// service asked before each request.
type target struct {
	name     string
	url      string // the protected request, through nginx
	cookie   string
	authPID  int // 0: no auth service (nginx alone)
	nginxPID int
	client   *http.Client

	latencies       []time.Duration
	authCPU, ngxCPU time.Duration
	wall            time.Duration
}

// TestForwardAuthPeers sends the same authenticated GET, -fwd.requests times
// from -fwd.concurrency clients, through nginx alone, through nginx asking
// cloakroom (Redis and SQLite session stores), and through nginx asking
// oauth2-proxy (cookie and Redis session stores), in interleaved rounds,
// and prints each one's throughput, latency and CPU per decision of the
// auth process, then the ratios.
func TestForwardAuthPeers(t *testing.T) {
	if *requests <= 0 {
		t.Skip("forward-auth benchmark: pass -fwd.requests=30000 (make bench-forward-auth)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads process CPU time from /proc")
	}
	app := serveApp(t)
	redisAddr := testservers.Redis(t)

	targets := []*target{startNginxAlone(t, app)}
	cr := startCloakroomTarget(t, app, cloakroomRedis, "redis://"+redisAddr+"/?prefix="+url.QueryEscape(testservers.RedisPrefix(t, redisAddr)))
	targets = append(targets, startFloorTarget(t, app, cr.cookie), cr,
		startCloakroomTarget(t, app, cloakroomSQLite, "sqlite://"+filepath.Join(t.TempDir(), "cloakroom.db")))
	if *oauth2Proxy != "" {
		provider := testoidc.Start(t, nil)
		// Long-lived tokens: the benchmark measures decisions on a
		// signed-in session, never a refresh.
		provider.Do(func(m *mockoidc.MockOIDC) { m.AccessTTL, m.RefreshTTL = time.Hour, 2*time.Hour })
		targets = append(targets,
			startOAuth2ProxyTarget(t, app, provider, "cookie", redisAddr),
			startOAuth2ProxyTarget(t, app, provider, "redis", redisAddr))
	} else {
		t.Log("no -fwd.oauth2-proxy: measuring cloakroom and nginx alone")
	}

	// Warm up every path (connection pools, caches) before measuring.
	for _, tg := range targets {
		if _, err := tg.round(min(500, *requests), *concurrency); err != nil {
			t.Fatalf("%s: warm-up: %v", tg.name, err)
		}
		tg.latencies = nil
	}
	perRound := max(1, *requests / *rounds)
	for r := range *rounds {
		n := perRound
		if r == *rounds-1 {
			n = *requests - perRound*(*rounds-1)
		}
		for _, tg := range targets {
			authBefore, nginxBefore := cpuTime(t, tg.authPID), cpuTime(t, tg.nginxPID)
			start := time.Now()
			lat, err := tg.round(n, *concurrency)
			tg.wall += time.Since(start)
			if err != nil {
				t.Fatalf("%s: %v", tg.name, err)
			}
			tg.authCPU += cpuTime(t, tg.authPID) - authBefore
			tg.ngxCPU += cpuTime(t, tg.nginxPID) - nginxBefore
			tg.latencies = append(tg.latencies, lat...)
		}
	}
	report(t, targets)
}

// round sends n requests from c clients and returns their latencies.
func (tg *target) round(n, c int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				start := time.Now()
				err := tg.do()
				lat[i] = time.Since(start)
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n)) // stop the round
					return
				}
			}
		})
	}
	wg.Wait()
	return lat, firstErr
}

// do sends the protected GET and checks that the app answered, with the
// identity the decision vouched for when there is an auth service.
func (tg *target) do() error {
	req, err := http.NewRequest(http.MethodGet, tg.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if tg.cookie != "" {
		req.Header.Set("Cookie", tg.cookie)
	}
	res, err := tg.client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	switch {
	case err != nil:
		return err
	case res.StatusCode != http.StatusOK || string(body) != appBody:
		return fmt.Errorf("status %d, body %.200q", res.StatusCode, body)
	case tg.authPID != 0 && !strings.Contains(res.Header.Get("X-Seen-Email"), "@"):
		return fmt.Errorf("the app got no identity (X-Forwarded-User %q, X-Forwarded-Email %q)", res.Header.Get("X-Seen-User"), res.Header.Get("X-Seen-Email"))
	}
	return nil
}

func report(t *testing.T, targets []*target) {
	var out bytes.Buffer
	conns := "decision connections kept alive (the documented configs)"
	fmt.Fprintf(&out, "%d requests per target, %d concurrent clients, %d interleaved rounds, %s, %d CPUs\n",
		*requests, *concurrency, *rounds, conns, runtime.NumCPU())
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50 µs\tp99 µs\tauth CPU µs/decision\tnginx CPU µs/request\tcookie bytes\t")
	byName := map[string]*target{}
	for _, tg := range targets {
		byName[tg.name] = tg
		slices.Sort(tg.latencies)
		n := len(tg.latencies)
		authCPU := "-"
		if tg.authPID != 0 {
			authCPU = fmt.Sprintf("%.1f", perRequest(tg.authCPU, n))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%s\t%.1f\t%d\t\n", tg.name, float64(n)/tg.wall.Seconds(),
			micro(tg.latencies[n*50/100]), micro(tg.latencies[n*99/100]), authCPU, perRequest(tg.ngxCPU, n), len(tg.cookie))
	}
	tw.Flush()
	fmt.Fprintln(&out)
	tw = tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio\tvalue\ttarget\t")
	// Each cloakroom store against each oauth2-proxy store; the like-for-
	// like pairs are Redis with Redis (server-side sessions on the
	// network) and each one's default (cloakroom's embedded SQLite,
	// oauth2-proxy's cookie: nothing on the network per decision).
	for _, pair := range [][2]string{
		{cloakroomRedis, oauth2ProxyRedis}, {cloakroomSQLite, oauth2ProxyCookie},
		{cloakroomRedis, oauth2ProxyCookie}, {cloakroomSQLite, oauth2ProxyRedis},
	} {
		cr, p := byName[pair[0]], byName[pair[1]]
		if cr == nil || p == nil {
			continue
		}
		ratio := perRequest(cr.authCPU, len(cr.latencies)) / perRequest(p.authCPU, len(p.latencies))
		verdict := "met"
		if ratio > cpuTarget {
			verdict = "NOT met"
		}
		fmt.Fprintf(tw, "%s CPU per decision / %s\t%.2f\t<= 0.33: %s\t\n", pair[0], pair[1], ratio, verdict)
		fmt.Fprintf(tw, "%s req/s / %s\t%.2f\t\t\n", pair[0], pair[1],
			(float64(len(cr.latencies))/cr.wall.Seconds())/(float64(len(p.latencies))/p.wall.Seconds()))
	}
	for _, name := range []string{cloakroomRedis, cloakroomSQLite} {
		cr := byName[name]
		if floor := byName["nginx+bare Go server"]; floor != nil && cr != nil {
			fmt.Fprintf(tw, "%s CPU per decision over the bare Go server (µs)\t%.1f\t\t\n", name,
				perRequest(cr.authCPU, len(cr.latencies))-perRequest(floor.authCPU, len(floor.latencies)))
		}
		if alone := byName["nginx alone"]; alone != nil && cr != nil {
			fmt.Fprintf(tw, "%s req/s / nginx alone\t%.2f\t\t\n", name,
				(float64(len(cr.latencies))/cr.wall.Seconds())/(float64(len(alone.latencies))/alone.wall.Seconds()))
		}
	}
	tw.Flush()
	fmt.Fprintf(&out, "(CPU from /proc/<pid>/stat, 10 ms ticks: cloakroom used %v in all on Redis)\n", byName[cloakroomRedis].authCPU)
	t.Log("\n" + out.String())
}

func perRequest(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

func micro(d time.Duration) float64 { return float64(d) / 1e3 }

// cpuTime is the user and system CPU time pid has used so far (0 for pid
// 0), from /proc/<pid>/stat, in clock ticks of 10 ms (USER_HZ is 100 on
// Linux).
func cpuTime(t *testing.T, pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name can hold spaces: the fields start after its ')'.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// floorListenEnv, when set, makes the test binary the floor's auth
// service instead of running tests (see startFloorTarget).
const floorListenEnv = "CLOAKROOM_BENCH_FLOOR_LISTEN"

func TestMain(m *testing.M) {
	if listen := os.Getenv(floorListenEnv); listen != "" {
		serveFloor(listen)
		return
	}
	os.Exit(m.Run())
}

// serveFloor answers every request at once with a fixed identity: the
// least any Go net/http auth service costs per decision, without looking
// at a session.
func serveFloor(listen string) {
	srv := &http.Server{Addr: listen, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Forwarded-User"] = []string{benchUser}
		h["X-Forwarded-Email"] = []string{benchEmail}
		h["X-Forwarded-Groups"] = []string{""}
		h["Authorization"] = []string{""}
		w.WriteHeader(http.StatusOK)
	})}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// startFloorTarget runs the floor (this test binary as a bare Go HTTP
// server that allows every request) behind the same nginx config as
// cloakroom's, with the same cookie on the requests.
func startFloorTarget(t *testing.T, app, cookie string) *target {
	listen := freeAddr(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), floorListenEnv+"="+listen)
	pid := startProcess(t, "floor", cmd, listen)
	conf, err := os.ReadFile("../../forwardauth/testdata/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr, nginxPID := startNginx(t, func(ngxListen string) string {
		site := substitute(t, string(conf),
			"127.0.0.1:8080", listen, "127.0.0.1:3000", app,
			"listen 80;", "listen "+ngxListen+";\n    access_log off;")
		return site
	})
	return &target{name: "nginx+bare Go server", url: "http://" + addr + "/items", cookie: cookie, authPID: pid, nginxPID: nginxPID, client: newClient()}
}

// serveApp is the protected app: a fixed answer, and the identity it got
// echoed in headers for the client to check.
func serveApp(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Seen-User", r.Header.Get("X-Forwarded-User"))
		w.Header().Set("X-Seen-Email", r.Header.Get("X-Forwarded-Email"))
		io.WriteString(w, appBody)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute, DisableCompression: true},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// startNginx starts nginx with site (for the listen address) and returns
// its address and process ID (one process: master_process off).
func startNginx(t *testing.T, site func(listen string) string) (addr string, pid int) {
	srv := testservers.StartNginx(t, site)
	// nginx may write its pid file just after it starts listening.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(srv.Dir, "nginx.pid"))
		if err == nil {
			if pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return srv.Addr, pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx wrote no pid file: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startNginxAlone is the floor: nginx proxying to the app with no
// decision.
func startNginxAlone(t *testing.T, app string) *target {
	addr, pid := startNginx(t, func(listen string) string {
		return fmt.Sprintf(`upstream app { server %s; }
server {
    listen %s;
    access_log off;
    location / {
        proxy_pass http://app;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
`, app, listen)
	})
	return &target{name: "nginx alone", url: "http://" + addr + "/items", nginxPID: pid, client: newClient()}
}

// startCloakroomTarget runs `cloakroom serve` with forward auth, sessions
// and users in store, behind nginx configured as docs/deploy.md shows
// (forwardauth/testdata/nginx.conf, with the addresses changed and the
// access log off), and signs the benchmark user in through nginx.
func startCloakroomTarget(t *testing.T, app, name, store string) *target {
	bin := *cloakroomBin
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "cloakroom")
		build := exec.Command(goCommand(), "build", "-o", bin, "github.com/cloakroom/cloakroom/cmd/cloakroom")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building cloakroom: %v\n%s", err, out)
		}
	}
	add := exec.Command(bin, "user", "add", benchUser, "--email", benchEmail, "--password-stdin", "--store", store)
	add.Stdin = strings.NewReader(benchPassword + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("cloakroom user add: %v\n%s", err, out)
	}
	listen := freeAddr(t)
	pid := startProcess(t, "cloakroom", exec.Command(bin, "serve",
		"--listen", listen, "--admin-listen", "", "--store", store, "--data-dir", t.TempDir(),
		"--forward-auth-proxy", "127.0.0.1", "--trusted-proxy", "127.0.0.1", "--forward-auth-host", "127.0.0.1",
		"--log-level", "warn"), listen)

	conf, err := os.ReadFile("../../forwardauth/testdata/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr, nginxPID := startNginx(t, func(ngxListen string) string {
		site := substitute(t, string(conf),
			"127.0.0.1:8080", listen, "127.0.0.1:3000", app,
			"listen 80;", "listen "+ngxListen+";\n    access_log off;")
		return site
	})
	base := "http://" + addr
	client := newClient()
	body, _ := json.Marshal(map[string]string{"username": benchUser, "password": benchPassword})
	res, err := client.Post(base+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	var cookie string
	for _, ck := range res.Cookies() {
		if ck.Name == cloakroom.DefaultCookieName && ck.Value != "" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		t.Fatalf("cloakroom login through nginx: status %d, no session cookie", res.StatusCode)
	}
	return &target{name: name, url: base + "/items", cookie: cookie, authPID: pid, nginxPID: nginxPID, client: client}
}

// oauth2ProxySite is nginx in front of oauth2-proxy in the shape of
// cloakroom's documented config (and of oauth2-proxy's own nginx
// example): an internal decision location, the identity copied from its
// answer with auth_request_set, the sign-in paths proxied.
const oauth2ProxySite = `upstream oauth2proxy { server %[1]s; keepalive 64; }
upstream app { server %[2]s; }

server {
    listen %[3]s;
    access_log off;

    location /oauth2/ {
        proxy_pass http://oauth2proxy;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Auth-Request-Redirect $request_uri;
    }

    location = /oauth2/auth {
        internal;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://oauth2proxy;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Uri $request_uri;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }

    location / {
        auth_request /oauth2/auth;
        auth_request_set $o2p_user $upstream_http_x_auth_request_user;
        auth_request_set $o2p_email $upstream_http_x_auth_request_email;
        auth_request_set $o2p_groups $upstream_http_x_auth_request_groups;
        auth_request_set $o2p_jwt $upstream_http_authorization;
        error_page 401 =403 /oauth2/sign_in;

        proxy_pass http://app;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-User $o2p_user;
        proxy_set_header X-Forwarded-Email $o2p_email;
        proxy_set_header X-Forwarded-Groups $o2p_groups;
        proxy_set_header Authorization $o2p_jwt;
    }
}
`

// startOAuth2ProxyTarget runs oauth2-proxy with the given session store
// ("cookie" or "redis") behind nginx, and signs in once through the mock
// provider.
func startOAuth2ProxyTarget(t *testing.T, app string, provider *testoidc.Mock, sessionStore, redisAddr string) *target {
	listen := freeAddr(t)
	addr, nginxPID := startNginx(t, func(ngxListen string) string {
		site := fmt.Sprintf(oauth2ProxySite, listen, app, ngxListen)
		return site
	})
	base := "http://" + addr
	var secret [16]byte
	rand.Read(secret[:])
	mc := provider.Config()
	args := []string{
		"--http-address=" + listen,
		"--provider=oidc", "--oidc-issuer-url=" + mc.Issuer, "--client-id=" + mc.ClientID, "--client-secret=" + mc.ClientSecret,
		"--redirect-url=" + base + "/oauth2/callback",
		"--cookie-secret=" + hex.EncodeToString(secret[:]), // 32 bytes: AES-256
		// With the Redis store its sessions (keys _oauth2_proxy_bench-*)
		// expire with the cookie, an hour after the run.
		"--cookie-name=_oauth2_proxy_bench", "--cookie-secure=false", "--cookie-expire=1h",
		"--email-domain=*", "--upstream=static://202", "--set-xauthrequest",
		"--reverse-proxy", "--trusted-proxy-ip=127.0.0.1", "--skip-provider-button",
		// cloakroom logs no line for an allowed decision; neither does
		// oauth2-proxy with its request log off.
		"--request-logging=false", "--auth-logging=false",
		"--session-store-type=" + sessionStore,
	}
	if sessionStore == "redis" {
		args = append(args, "--redis-connection-url=redis://"+redisAddr)
	}
	pid := startProcess(t, "oauth2-proxy", exec.Command(*oauth2Proxy, args...), listen)

	provider.Queue(testoidc.User{Subject: benchUser, Email: benchEmail})
	jar, _ := cookiejar.New(nil)
	login := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	res, err := login.Get(base + "/oauth2/start?rd=%2Fitems")
	if err != nil {
		t.Fatalf("oauth2-proxy (%s) login: %v", sessionStore, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != appBody {
		t.Fatalf("oauth2-proxy (%s) login ended at %s with %d %.300q", sessionStore, res.Request.URL, res.StatusCode, body)
	}
	u, _ := url.Parse(base)
	var pairs []string
	for _, ck := range jar.Cookies(u) {
		pairs = append(pairs, ck.Name+"="+ck.Value)
	}
	return &target{name: "nginx+oauth2-proxy(" + sessionStore + ")", url: base + "/items", cookie: strings.Join(pairs, "; "),
		authPID: pid, nginxPID: nginxPID, client: newClient()}
}

// startProcess starts cmd, which is to listen at addr, with its output in
// a file of the test's folder, and returns its process ID once addr
// accepts connections. The process is killed when the test ends (or when
// the test binary dies).
func startProcess(t *testing.T, name string, cmd *exec.Cmd, addr string) int {
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return cmd.Process.Pid
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited at start:\n%s", name, out)
		case <-ctx.Done():
			out, _ := os.ReadFile(logPath)
			t.Fatalf("%s does not listen at %s after 30 s:\n%s", name, addr, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// substitute replaces pairs in the documented config, failing when one of
// the documented values is missing (the doc changed).
func substitute(t *testing.T, conf string, pairs ...string) string {
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(conf, pairs[i]) {
			t.Fatalf("the documented nginx config no longer contains %q", pairs[i])
		}
		conf = strings.ReplaceAll(conf, pairs[i], pairs[i+1])
	}
	return conf
}

func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
