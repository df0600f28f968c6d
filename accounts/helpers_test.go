package accounts_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/accounts/sqliteaccounts"
	_ "modernc.org/sqlite"
)

// testParams keep argon2id cheap (64 KiB, one pass) in tests that are not
// about its cost.
var testParams = accounts.Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}

// clock is a settable clock; tests move it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// revoker records RevokeSessions calls and fails while err is set.
type revoker struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (r *revoker) Revoke(_ context.Context, user string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, user)
	return r.err
}

func (r *revoker) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *revoker) Fail(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
}

// fixture is a Service with a fake clock and a recording revoker.
type fixture struct {
	svc     *accounts.Service
	store   accounts.Store
	clock   *clock
	revoker *revoker
}

// newFixture builds a Service over store with cheap hashing; edit may change
// the Config first.
func newFixture(t *testing.T, store accounts.Store, edit ...func(*accounts.Config)) *fixture {
	t.Helper()
	f := &fixture{store: store, clock: newClock(), revoker: &revoker{}}
	cfg := accounts.Config{
		Now:            f.clock.Now,
		RevokeSessions: f.revoker.Revoke,
		Logger:         slog.New(slog.DiscardHandler),
		Throttle:       memaccounts.NewThrottle(0),
	}
	cfg = accounts.WithHashParams(cfg, testParams)
	for _, e := range edit {
		e(&cfg)
	}
	f.svc = accounts.New(store, cfg)
	return f
}

func (f *fixture) mustAdd(t *testing.T, name, password string, roles ...string) {
	t.Helper()
	if err := f.svc.Add(t.Context(), name, password, roles, ""); err != nil {
		t.Fatalf("Add(%q): %v", name, err)
	}
}

// storeFactories are the Store implementations every shared suite runs on.
var storeFactories = []struct {
	name string
	new  func(t *testing.T) accounts.Store
}{
	{"Memory", func(*testing.T) accounts.Store { return memaccounts.New() }},
	{"SQLite", func(t *testing.T) accounts.Store {
		s, err := sqliteaccounts.New(t.Context(), openSQLite(t, filepath.Join(t.TempDir(), "cloakroom.db")))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// openSQLite opens path in WAL mode the way sqlitestore hands its handle to
// applications: one connection, BEGIN IMMEDIATE, a busy timeout. A store
// that needed two connections at once would deadlock here.
func openSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)") // durability is not under test; fsyncs would dominate run time
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	var mode string
	if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	return db
}
