package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
)

// useAccountStore rebuilds the env's account service and gateway over
// store, which usually wraps e.users, with edit applied to the service's
// Config.
func (e *env) useAccountStore(store accounts.Store, edit ...func(*accounts.Config)) {
	e.t.Helper()
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := accounts.Config{Now: e.clock.Now, RevokeSessions: e.manager.RevokeUser, Throttle: memaccounts.NewThrottle(0), Logger: logger}
	for _, f := range edit {
		f(&cfg)
	}
	e.accounts = accounts.New(store, cfg)
	e.cfg.Accounts = e.accounts
	e.registry = prometheus.NewRegistry()
	metrics, err := gateway.NewMetrics(e.registry)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cfg.Metrics = metrics
	gw, err := gateway.New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { gw.Close() })
	e.gw = gw
	e.srv = httptest.NewTLSServer(gw.Handler())
	e.t.Cleanup(e.srv.Close)
}

// pausingAccounts holds the first Get after it is armed, once the record
// has been read: the login has what it will check the password against,
// and the test changes the account before letting it go on.
type pausingAccounts struct {
	accounts.Store
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func newPausingAccounts(s accounts.Store) *pausingAccounts {
	return &pausingAccounts{Store: s, reached: make(chan struct{}), release: make(chan struct{})}
}

func (p *pausingAccounts) Get(ctx context.Context, name string) (accounts.Record, error) {
	rec, err := p.Store.Get(ctx, name)
	if p.armed.CompareAndSwap(true, false) {
		close(p.reached)
		<-p.release
	}
	return rec, err
}

// Deterministic: an account change that lands between
// the read of the account record and the end of the password check makes
// the login fail, and no session is created.
func TestLoginRacingAnAccountChangeFails(t *testing.T) {
	ctx := context.Background()
	changes := []struct {
		name   string
		change func(e *env) error
	}{
		{"disable", func(e *env) error { return e.accounts.Disable(ctx, "alice") }},
		{"delete", func(e *env) error { return e.accounts.Delete(ctx, "alice") }},
		{"roles", func(e *env) error { return e.accounts.SetRoles(ctx, "alice", []string{"dev"}) }},
		{"passwd", func(e *env) error { return e.accounts.SetPassword(ctx, "alice", "a brand new passphrase 42") }},
	}
	for _, typed := range []string{"alice", "ALICE"} {
		for _, c := range changes {
			if c.name == "passwd" && typed != "alice" {
				continue // one password hash per run is enough
			}
			t.Run(c.name+"/"+typed, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				pause := newPausingAccounts(e.users)
				e.useAccountStore(pause)
				pause.armed.Store(true)

				b := e.browser()
				b.raceSignIn(t, "login racing "+c.name, pause.reached, pause.release, func() response {
					return b.postJSONNoFatal("/auth/login", map[string]string{"username": typed, "password": password})
				}, func() error { return c.change(e) })
			})
		}
	}
}

// A name typed in another case than the stored one still logs in, as the
// stored name.
func TestLoginWithNameInAnotherCase(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.postJSON("/auth/login", map[string]string{"username": "ALICE", "password": password})
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Text)
	}
	if got := b.get("/auth/session").json(t)["user"]; got != "alice" {
		t.Errorf("user %v, want alice", got)
	}
}

// Real timing: a user logs in four at a time, in a
// loop, while an admin disables the account. Once Disable has returned and
// the logins in flight have finished, no session is live.
func TestLoginLoopDuringDisableLeavesNoSession(t *testing.T) {
	e := newEnv(t)
	var (
		stop      atomic.Bool
		succeeded atomic.Int64
		mu        sync.Mutex
		tokens    []string
		wg        sync.WaitGroup
	)
	first := make(chan struct{})
	var once sync.Once
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b := e.browser()
				r := b.postJSONNoFatal("/auth/login", map[string]string{"username": "alice", "password": password})
				if r.Status == http.StatusOK {
					succeeded.Add(1)
					once.Do(func() { close(first) })
				}
				if b.token != "" {
					mu.Lock()
					tokens = append(tokens, b.token)
					mu.Unlock()
				}
			}
		}()
	}
	<-first // the loop is running: logins are in every stage
	if err := e.accounts.Disable(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()

	live := 0
	for _, token := range tokens {
		b := e.browser()
		b.token = token
		if b.loggedIn() {
			live++
		}
	}
	t.Logf("%d logins succeeded, %d cookies issued", succeeded.Load(), len(tokens))
	if live != 0 {
		t.Errorf("%d sessions are live after Disable returned", live)
	}
}

// raceSignIn sends a sign-in (send) from another goroutine, applies
// change once the request is parked (reached closed), lets it go on
// (closes release), and checks that it was refused with 401 and left no
// live session.
func (b *browser) raceSignIn(t *testing.T, what string, reached, release chan struct{}, send func() response, change func() error) {
	t.Helper()
	done := make(chan response, 1)
	go func() { done <- send() }()
	<-reached
	if err := change(); err != nil {
		t.Fatal(err)
	}
	close(release)
	r := <-done
	if r.Status != http.StatusUnauthorized {
		t.Errorf("%s: status %d, want 401: %s", what, r.Status, r.Text)
	}
	if b.token != "" && b.loggedIn() {
		t.Errorf("%s left a live session", what)
	}
}

// postJSONNoFatal is postJSON for goroutines other than the test's: a
// transport failure gives status 0 instead of stopping the test.
func (b *browser) postJSONNoFatal(path string, v map[string]string) response {
	body, _ := json.Marshal(v)
	return b.postJSONRaw(path, body)
}

// postJSONRaw is postJSONNoFatal for a body already encoded, with header
// pairs in extra ("Name", "value", ...).
func (b *browser) postJSONRaw(path string, body []byte, extra ...string) response {
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		return response{}
	}
	req.Header = b.header.Clone()
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := b.e.srv.Client().Do(req)
	if err != nil {
		return response{}
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	b.token = setCookieTokenOf(resp.Header)
	return response{Status: resp.StatusCode, Header: resp.Header, Text: string(text)}
}

func setCookieTokenOf(h http.Header) string {
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == cookieName {
			return c.Value
		}
	}
	return ""
}
