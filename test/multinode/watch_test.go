package multinode

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// watchNode is one node of TestWatchEndsOnEveryNode: a manager on its own
// store client, serving a stream held open by Session.Watch.
type watchNode struct {
	manager *cloakroom.Manager
	srv     *httptest.Server
}

func newWatchNode(t *testing.T, store nodeStore) *watchNode {
	t.Helper()
	t.Cleanup(store.close)
	m, err := cloakroom.New(cloakroom.Config{
		Store:  store.store,
		Logger: quiet,
		// Only the store's end notifications may end a watch here: the
		// backstop re-check would otherwise hide a missing one.
		RecheckInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		if err := s.Login(r.Context(), r.URL.Query().Get("user"), cloakroom.LoginOptions{}); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, s.CSRFToken())
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Session(r).Logout(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		if err := m.RevokeUser(r.Context(), r.URL.Query().Get("user")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		if !s.LoggedIn() {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		ctx, cancel := s.Watch(r.Context())
		defer cancel()
		io.WriteString(w, "open\n")
		http.NewResponseController(w).Flush()
		<-ctx.Done()
	})
	n := &watchNode{manager: m, srv: httptest.NewServer(m.Handler(mux))}
	t.Cleanup(n.srv.Close)
	return n
}

// TestWatchEndsOnEveryNode holds a stream open on A and on B with
// Session.Watch, ends the session through C (a logout, or a revocation of
// the user), and checks that both streams end: with the managers'
// backstop re-check set to an hour, only the store's end notifications
// (LISTEN/NOTIFY, Redis pub/sub, SQLite's check of the file) can end them.
// How long each took, from C's response, is logged and reported.
func TestWatchEndsOnEveryNode(t *testing.T) {
	const rounds = 10 // half logouts, half revocations of the user
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			setup := v.open(t)
			var nodes [3]*watchNode
			for i := range nodes {
				nodes[i] = newWatchNode(t, setup.node(t, setup.addr))
			}
			a, b, c := nodes[0], nodes[1], nodes[2]
			cl := newClient(t)
			// The first Watch on a node starts its manager's
			// subscription to the store's ends, in the background. An
			// end published before that subscription takes effect
			// must still come through as End{All}; warm-up rounds,
			// until both nodes ended their streams, count the ones
			// that did not.
			missed := 0
			for warm := 0; ; warm++ {
				if warm == 10 {
					t.Fatalf("%d warm-up rounds: streams never ended by notification", warm)
				}
				user := "warmup-" + randomHex(6)
				r, err := cl.do(http.MethodPost, c.srv.URL+"/login?user="+user, "", nil)
				if err != nil || r.status != http.StatusOK {
					t.Fatalf("login through C: %v, status %d: %s", err, r.status, r.body)
				}
				token := cookieToken(r.header)
				streams := []*http.Response{openStream(t, cl, a, token), openStream(t, cl, b, token)}
				if r, err := cl.do(http.MethodPost, c.srv.URL+"/logout", token, nil, cloakroom.CSRFHeader, string(r.body)); err != nil || r.status != http.StatusOK {
					t.Fatalf("logout through C: %v, status %d: %s", err, r.status, r.body)
				}
				ended := 0
				for _, resp := range streams {
					if streamEnds(resp, 2*time.Second) {
						ended++
					}
				}
				if ended == len(streams) {
					break
				}
				missed += len(streams) - ended
			}
			if missed > 0 {
				t.Logf("%s: %d streams opened right after their node started did not end with their session (a notification subscription not yet in effect, without End{All} once it was)", v.name, missed)
			}
			var delays durations
			for round := range rounds {
				user := "watcher-" + randomHex(6)
				r, err := cl.do(http.MethodPost, c.srv.URL+"/login?user="+user, "", nil)
				if err != nil || r.status != http.StatusOK {
					t.Fatalf("login through C: %v, status %d: %s", err, r.status, r.body)
				}
				token, csrf := cookieToken(r.header), string(r.body)
				var streams []*http.Response
				for _, n := range []*watchNode{a, b} {
					streams = append(streams, openStream(t, cl, n, token))
				}
				how := "/logout"
				if round%2 == 1 {
					how = "/revoke?user=" + user
				}
				r, err = cl.do(http.MethodPost, c.srv.URL+how, token, nil, cloakroom.CSRFHeader, csrf)
				if err != nil || r.status != http.StatusOK {
					t.Fatalf("%s through C: %v, status %d: %s", how, err, r.status, r.body)
				}
				ended := time.Now()
				for i, resp := range streams {
					// The client's timeout (10 s) bounds a stream that
					// never ends; the notification takes milliseconds.
					_, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatalf("round %d: the stream on %s did not end after %s through C: %v", round, []string{"A", "B"}[i], how, err)
					}
					delays = append(delays, time.Since(ended))
				}
			}
			t.Logf("%s: %d streams ended %s after the response through C (median), %s at most",
				v.name, len(delays), ms(delays.quantile(0.5)), ms(delays.max()))
			report.mu.Lock()
			report.watches = append(report.watches, watchRow{variant: v.name, streams: len(delays), delays: delays, missedAtStart: missed})
			report.mu.Unlock()
		})
	}
}

// openStream opens n's stream with token and waits until it is watched.
func openStream(t *testing.T, cl *client, n *watchNode, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.srv.URL+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", cookieName+"="+token)
	resp, err := cl.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("stream: status %d", resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "open\n" {
		resp.Body.Close()
		t.Fatalf("stream: first line %q, %v", line, err)
	}
	return resp
}

// streamEnds reports whether resp's body ends within limit; if not, it
// closes it.
func streamEnds(resp *http.Response, limit time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case err := <-done:
		resp.Body.Close()
		return err == nil
	case <-timer.C:
		resp.Body.Close()
		<-done
		return false
	}
}

// watchRow is one store's stream-ending figures.
type watchRow struct {
	variant       string
	streams       int
	delays        durations
	missedAtStart int // warm-up streams that did not end
}

func formatWatchRows(rows []watchRow) string {
	var b strings.Builder
	b.WriteString("Three managers share one store, with the backstop re-check of watched sessions set to an hour. After warm-up rounds that start each manager's subscription, a stream is held open per round with Session.Watch on A and on B, and the session is logged out (or its user revoked) through C; the delay runs from C's response to the end of each stream.\n\n")
	b.WriteString("| store | streams | median | p99 | max | warm-up streams that did not end |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d |\n", r.variant, r.streams, ms(r.delays.quantile(0.5)), ms(r.delays.quantile(0.99)), ms(r.delays.max()), r.missedAtStart)
	}
	return b.String()
}
