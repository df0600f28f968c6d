package multinode

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// asyncWindowTarget is the revocation window the design aims for where
// invalidation is asynchronous: a node may accept a revoked session for
// less than this after the logout response, at the 99th percentile
// (enforced on a quiet machine, CLOAKROOM_STRICT_TIMING).
const asyncWindowTarget = 10 * time.Millisecond

// asyncWindowCeiling is the bound these tests always enforce. Where a cache
// hears of a revocation asynchronously, the window depends on when the
// listening goroutine (and, for Postgres, the notifying server process) next
// gets a CPU: on a quiet machine it stays under asyncWindowTarget; on a
// loaded 2-core CI machine running the race detector it can reach tens of
// milliseconds. A miss of the target is therefore reported, and fails the
// test only with CLOAKROOM_STRICT_TIMING=1 (make multinode-strict); a window
// past this ceiling means invalidation is broken, and always fails.
const asyncWindowCeiling = 500 * time.Millisecond

// missedAsyncTarget reports a window past the target: an error past the
// ceiling or in strict mode, a loud log line otherwise.
func missedAsyncTarget(t *testing.T, window time.Duration, format string, args ...any) {
	t.Helper()
	if window >= asyncWindowCeiling {
		t.Errorf(format, args...)
		return
	}
	missedTimingTarget(t, format, args...)
}

// missedTimingTarget reports a wall-clock target missed: an error in strict
// mode (CLOAKROOM_STRICT_TIMING=1), a loud log line otherwise, since a
// loaded CI machine can miss any such target with nothing broken.
func missedTimingTarget(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CLOAKROOM_STRICT_TIMING") == "1" {
		t.Errorf(format, args...)
		return
	}
	t.Logf("TIMING TARGET MISSED (not failing: set CLOAKROOM_STRICT_TIMING=1 to fail): "+format, args...)
}

// pollLimit ends a poll that never sees the session refused.
const pollLimit = 2 * time.Second

// TestSessionAcrossNodes logs in through A, uses the session through B,
// logs out through C, and checks that A and B, both with warm caches,
// refuse the cookie from then on: at once where every check reads the
// store, and within the asynchronous window where a cache must first hear
// of the change (asyncWindowTarget).
func TestSessionAcrossNodes(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			cl := newCluster(t, v)
			c := newClient(t)

			token, csrf := c.login(t, cl.a)
			expectUser(t, c, cl.b, token)
			expectUser(t, c, cl.c, token)

			// Several requests on A and B, until each answers from its
			// cache where it has one (a store may re-read a session it
			// wrote itself for a while: redisstore checks its own writes
			// for a second).
			warmA := warm(t, c, cl.a, token, v.cached)
			warmB := warm(t, c, cl.b, token, v.cached)
			t.Logf("warm after %d requests on A, %d on B", warmA, warmB)

			r, err := c.logout(cl.c, token, csrf)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusNoContent {
				t.Fatalf("logout through C: status %d: %s", r.status, r.body)
			}
			if cleared := clearsCookie(r.header); !cleared {
				t.Errorf("logout response does not clear the cookie: %q", r.header.Values("Set-Cookie"))
			}
			loggedOut := time.Now()
			hitsBefore, okBefore := cl.api.hits.Load(), c.apiOK.Load()
			for _, n := range []*node{cl.a, cl.b, cl.c} {
				res := pollUntilRefused(c, n, token, loggedOut)
				switch {
				case res.err != nil:
					t.Errorf("node %s after logout through C: %v", n.name, res.err)
				case res.accepted == 0:
				case v.strict || n == cl.c:
					// The store promises no accept once the logout
					// returned, or the node made the change itself.
					t.Errorf("node %s accepted the session %d times after the logout response", n.name, res.accepted)
				case res.window >= asyncWindowTarget:
					missedAsyncTarget(t, res.window, "node %s accepted the session %d times, until %v after the logout response (target: under %v)", n.name, res.accepted, res.window, asyncWindowTarget)
				default:
					t.Logf("node %s accepted the session %d times, until %v after the logout response, within the %v asynchronous window",
						n.name, res.accepted, res.window, asyncWindowTarget)
				}
			}
			if hits, ok := cl.api.hits.Load()-hitsBefore, c.apiOK.Load()-okBefore; hits != ok {
				t.Errorf("after logout the upstream saw %d requests, but only %d were answered 200", hits, ok)
			}
			// The old CSRF token and cookie cannot log out again or act.
			r, err = c.logout(cl.a, token, csrf)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusNoContent && r.status != http.StatusUnauthorized {
				t.Errorf("second logout through A: status %d: %s", r.status, r.body)
			}
			checkNoPanics(t, cl.a, cl.b, cl.c)
		})
	}
}

// expectUser checks that n accepts token as the test user.
func expectUser(t *testing.T, c *client, n *node, token string) {
	t.Helper()
	status, user, err := c.whoami(n, token)
	if err != nil {
		t.Fatalf("node %s: %v", n.name, err)
	}
	if status != http.StatusOK || user != userName {
		t.Fatalf("node %s: status %d, user %q; want 200 and %q", n.name, status, user, userName)
	}
}

// warm sends authenticated requests to n until, for a caching store, one
// is answered without a store round trip, and returns how many it took.
// Without a cache it checks that every check goes to the store. Where
// round trips are not counted, it sends three.
func warm(t *testing.T, c *client, n *node, token string, cached bool) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for i := 1; ; i++ {
		if n.store.trips == nil {
			expectUser(t, c, n, token)
			if i >= 3 {
				return i
			}
			continue
		}
		before := n.store.trips.Load()
		expectUser(t, c, n, token)
		trips := n.store.trips.Load() - before
		switch {
		case !cached && trips == 0:
			t.Fatalf("node %s answered without asking its store, which has no cache", n.name)
		case !cached && i >= 3:
			return i
		case cached && trips == 0 && i >= 2:
			return i
		case time.Now().After(deadline):
			t.Fatalf("node %s still asks its store after %d requests", n.name, i)
		case cached && i >= 3:
			time.Sleep(20 * time.Millisecond) // waiting out a read-your-writes window
		}
	}
}

// warmQuick sends a few authenticated requests to n, more if a cache fill
// was refused (an invalidation for the session's creation arrived while
// the first checks were running), and reports whether the last one was
// answered from n's cache (true where round trips are not counted).
func warmQuick(c *client, n *node, token string) (bool, error) {
	var trips int64
	for i := 1; i <= 10; i++ {
		if n.store.trips == nil {
			if status, user, err := c.whoami(n, token); err != nil || status != http.StatusOK || user != userName {
				return false, fmt.Errorf("node %s while warming: status %d, user %q, %v", n.name, status, user, err)
			}
			if i >= 3 {
				return true, nil
			}
			continue
		}
		before := n.store.trips.Load()
		status, user, err := c.whoami(n, token)
		if err != nil {
			return false, err
		}
		if status != http.StatusOK || user != userName {
			return false, fmt.Errorf("node %s while warming: status %d, user %q", n.name, status, user)
		}
		trips = n.store.trips.Load() - before
		if i >= 3 && trips == 0 {
			break
		}
	}
	return trips == 0, nil
}

func clearsCookie(h http.Header) bool {
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err == nil && c.Name == cookieName && c.Value == "" && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

func checkNoPanics(t *testing.T, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		if p := n.panics.Load(); p != 0 {
			t.Errorf("node %s: %d handler panics", n.name, p)
		}
	}
}

// pollResult is what one node did with a session after its logout response
// had arrived.
type pollResult struct {
	// window is when, counted from the logout response, the first request
	// the node refused started; 0 when the very first request was refused.
	window time.Duration
	// accepted counts requests started after the logout response that the
	// node still served as logged in.
	accepted int
	err      error
}

// pollUntilRefused sends authenticated requests to n, one after another,
// until n refuses the session.
func pollUntilRefused(c *client, n *node, token string, since time.Time) pollResult {
	var res pollResult
	for first := true; ; first = false {
		began := time.Since(since)
		status, user, err := c.whoami(n, token)
		switch {
		case err != nil:
			res.err = fmt.Errorf("node %s: %w", n.name, err)
			return res
		case status == http.StatusUnauthorized:
			if !first {
				res.window = began
			}
			return res
		case status != http.StatusOK || user != userName:
			res.err = fmt.Errorf("node %s after logout: status %d, user %q", n.name, status, user)
			return res
		}
		res.accepted++
		if began > pollLimit {
			res.err = fmt.Errorf("node %s still accepts the session %v after the logout response", n.name, began)
			return res
		}
	}
}

// windowRow is one store's revocation figures.
type windowRow struct {
	variant       string
	cached        bool
	strict        bool
	checks        string
	returns       string
	runs          int
	notWarm       int
	windows       durations // one per node and run
	accepted      int       // requests accepted after the logout response, all runs
	runsAccepting int       // runs in which some node accepted such a request
	elapsed       time.Duration
	// delivery is, per run, when an independent LISTEN connection heard
	// the logout's NOTIFY, counted from the logout response (negative:
	// before it). Only for the PostgreSQL cache.
	delivery durations
	unheard  int // logouts whose NOTIFY the probe never heard
	// logouts is how long each logout request took, from sending it to
	// its response: what waiting for other nodes costs.
	logouts durations
}

// TestRevocationWindow measures, over many logouts per store, how long a
// node whose cache holds the session still accepts it once the logout
// response (from another node) has arrived.
//
// Each run starts a session through C, warms A's and B's caches with a few
// requests, logs out through C, and then polls A and B at once, each
// sending one request after another until refused. Sessions are started
// through C so that A and B know the session only from reading it: a
// store may treat a session it wrote itself specially (redisstore checks
// its cached answers against its own writes for a second), which is not
// the cache being measured.
func TestRevocationWindow(t *testing.T) {
	const (
		runs   = 200
		budget = 12 * time.Second // per store; fewer runs are made if it runs out
	)
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			cl := newCluster(t, v)
			c := newClient(t)
			row := windowRow{variant: v.name, cached: v.cached, strict: v.strict, checks: v.checks, returns: v.returns}
			var probe *notifyProbe
			if cl.setup.probe != nil {
				probe = cl.setup.probe(t)
			}
			type logout struct {
				key        string
				sent, done time.Time
			}
			var logouts []logout
			// Runs whose warm-up was answered from the node's cache: only
			// they measure the cached path (on a loaded machine an entry
			// can be missed now and then; every run still counts for the
			// "nothing accepted after the logout response" promise).
			warmRuns := 0
			start := time.Now()
			for row.runs < runs && time.Since(start) < budget {
				token, csrf, err := c.mint(cl.c)
				if err != nil {
					t.Fatal(err)
				}
				warm := true
				for _, n := range []*node{cl.a, cl.b} {
					cachedNow, err := warmQuick(c, n, token)
					if err != nil {
						t.Fatal(err)
					}
					if v.cached && !cachedNow {
						row.notWarm++
						warm = false
					}
				}
				if warm {
					warmRuns++
				}
				sent := time.Now()
				r, err := c.logout(cl.c, token, csrf)
				if err != nil {
					t.Fatal(err)
				}
				if r.status != http.StatusNoContent {
					t.Fatalf("logout through C: status %d: %s", r.status, r.body)
				}
				loggedOut := time.Now()
				row.logouts = append(row.logouts, loggedOut.Sub(sent))
				if key, ok := cloakroom.ParseToken(token); ok {
					logouts = append(logouts, logout{key: "d:" + key.String(), sent: sent, done: loggedOut}) // pgstore's payload for a deleted session
				}
				var results [2]pollResult
				var wg sync.WaitGroup
				for i, n := range []*node{cl.a, cl.b} {
					wg.Go(func() { results[i] = pollUntilRefused(c, n, token, loggedOut) })
				}
				wg.Wait()
				any := false
				for _, res := range results {
					if res.err != nil {
						t.Fatal(res.err)
					}
					row.windows = append(row.windows, res.window)
					row.accepted += res.accepted
					any = any || res.accepted > 0
				}
				if any {
					row.runsAccepting++
				}
				row.runs++
			}
			row.elapsed = time.Since(start)
			if probe != nil {
				time.Sleep(100 * time.Millisecond) // for the last NOTIFY
				for _, lo := range logouts {
					if at, ok := probe.arrival(lo.key, lo.sent); ok {
						row.delivery = append(row.delivery, at.Sub(lo.done))
					} else {
						row.unheard++
					}
				}
				t.Logf("%s: NOTIFY heard by an independent listener, from the logout response: p50 %s, p99 %s, max %s; after the response in %d of %d runs; never heard: %d",
					v.name, ms(row.delivery.quantile(0.5)), ms(row.delivery.quantile(0.99)), ms(row.delivery.max()), row.delivery.positive(), len(row.delivery), row.unheard)
			}
			report.mu.Lock()
			report.windows = append(report.windows, row)
			report.mu.Unlock()
			checkNoPanics(t, cl.a, cl.b, cl.c)

			t.Logf("%s: %d runs in %v; window p50 %s, p99 %s, max %s; %d requests accepted after the logout response, in %d runs; %d of %d warm-ups not served from cache",
				v.name, row.runs, row.elapsed.Round(time.Millisecond), ms(row.windows.quantile(0.5)), ms(row.windows.quantile(0.99)), ms(row.windows.max()),
				row.accepted, row.runsAccepting, row.notWarm, 2*row.runs)
			if row.runs < 50 {
				t.Errorf("only %d runs within %v: too few for a 99th percentile", row.runs, budget)
			}
			if v.cached && warmRuns < 50 {
				t.Errorf("only %d of %d runs were warmed from the node's cache (%d warm-ups missed it): too few measured the cached path", warmRuns, row.runs, row.notWarm)
			}
			if v.strict {
				if row.accepted > 0 {
					t.Errorf("%s promises that no node accepts a session once its logout returned, yet %d requests that started after the logout response were accepted (in %d of %d runs)",
						v.name, row.accepted, row.runsAccepting, row.runs)
				}
				return
			}
			if p99 := row.windows.quantile(0.99); p99 >= asyncWindowTarget {
				missedAsyncTarget(t, p99, "%s: revocation window p99 %s misses the %v target by %s (max %s; %d requests accepted after logout in %d of %d runs)",
					v.name, ms(p99), asyncWindowTarget, ms(p99-asyncWindowTarget), ms(row.windows.max()), row.accepted, row.runsAccepting, row.runs)
			}
		})
	}
}

func formatWindowRows(rows []windowRow) string {
	var b strings.Builder
	b.WriteString("Three gateways share one store, each with its own client and cache. Per run: a session is started through C, A and B answer it (from their caches where they have one), it is logged out through C, and A and B are then polled at once until they refuse it. The window is when the first refused request started, counted from the arrival of the logout response (0 when the first request was already refused); every node and run is one observation.\n\n")
	b.WriteString("| store | session checks | logout returns | runs | observations | refused at once | p50 | p99 | max | requests accepted after logout (runs) | logout request p50 / p99 |\n")
	b.WriteString("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %s | %s | %s | %d (%d) | %s / %s |\n",
			r.variant, r.checks, r.returns, r.runs, len(r.windows), len(r.windows)-r.windows.positive(),
			ms(r.windows.quantile(0.5)), ms(r.windows.quantile(0.99)), ms(r.windows.max()), r.accepted, r.runsAccepting,
			ms(r.logouts.quantile(0.5)), ms(r.logouts.quantile(0.99)))
	}
	for _, r := range rows {
		if len(r.delivery) == 0 && r.unheard == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: an independent LISTEN connection in the test process heard the logout's NOTIFY, counted from the logout response, at p50 %s, p99 %s, max %s (negative: before the response); after the response in %d of %d runs; never in %d.\n",
			r.variant, ms(r.delivery.quantile(0.5)), ms(r.delivery.quantile(0.99)), ms(r.delivery.max()), r.delivery.positive(), len(r.delivery), r.unheard)
	}
	b.WriteString("\nTarget: no request that starts after the logout response is accepted.\n")
	return b.String()
}
