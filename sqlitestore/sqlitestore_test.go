package sqlitestore_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/sqlitestore"
	"github.com/cloakroom/cloakroom/storetest"
)

// openStore opens a store on path and closes it when the test ends.
func openStore(t testing.TB, path string, cfg sqlitestore.Config) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), path, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
		return openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{Now: clock.Now})
	})
}

// TestConformanceNew runs the suite on a store built by New on one shared
// pool, where the store itself must keep its writes from colliding.
func TestConformanceNew(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
		path := filepath.Join(t.TempDir(), "app.db")
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := sqlitestore.New(context.Background(), db, sqlitestore.Config{Now: clock.Now, TablePrefix: "cloakroom_"})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSessionsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rec := storetest.NewRecord("alice", time.Now())
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BumpGeneration(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path, sqlitestore.Config{})
	got, found, err := s.Find(ctx, rec.Key)
	if err != nil || !found {
		t.Fatalf("Find after reopen: found=%v err=%v", found, err)
	}
	if !bytes.Equal(got.Data, rec.Data) || got.Handle != rec.Handle {
		t.Fatalf("Find after reopen returned %+v, want %+v", got, rec)
	}
	if gen, err := s.Generation(ctx, "bob"); err != nil || gen != 1 {
		t.Fatalf("Generation after reopen = %d, %v; want 1", gen, err)
	}
}

// killChildEnv switches the test binary, re-executed by
// TestSessionsSurviveKill, into the child that writes and waits to be killed.
const killChildEnv = "SQLITESTORE_TEST_KILL_CHILD_DB"

func TestSessionsSurviveKill(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		runKillChild(path)
		return
	}
	if runtime.GOOS == "js" || runtime.GOOS == "wasip1" || runtime.GOOS == "ios" {
		t.Skipf("cannot start a child process on %s", runtime.GOOS)
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSessionsSurviveKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })

	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(time.Minute):
		t.Fatalf("child never became ready; stderr:\n%s", stderr.String())
	}
	var liveHex, revokedHex string
	if _, err := fmt.Sscanf(line, "ready %s %s", &liveHex, &revokedHex); err != nil {
		t.Fatalf("child said %q (%v); stderr:\n%s", line, err, stderr.String())
	}

	// Process.Kill sends SIGKILL on Unix: no deferred function, no Close
	// and no checkpoint runs in the child.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly, want killed")
	}

	ctx := context.Background()
	s := openStore(t, path, sqlitestore.Config{})
	got, found, err := s.Find(ctx, parseKey(t, liveHex))
	if err != nil || !found {
		t.Fatalf("Find after kill: found=%v err=%v", found, err)
	}
	if got.Version != 2 || string(got.Data) != "after update" {
		t.Fatalf("Find after kill = version %d, data %q; want the update the child committed", got.Version, got.Data)
	}
	// A revocation must survive a crash too, or a logout could be undone.
	if _, found, err := s.Find(ctx, parseKey(t, revokedHex)); err != nil || found {
		t.Fatalf("revoked session after kill: found=%v err=%v; want not found", found, err)
	}
	if gen, err := s.Generation(ctx, "bob"); err != nil || gen != 1 {
		t.Fatalf("Generation(bob) after kill = %d, %v; want 1", gen, err)
	}
}

// runKillChild commits a session, updates it, revokes another, reports the
// keys on stdout and waits for the parent's SIGKILL.
func runKillChild(path string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{PurgeInterval: -1})
	if err != nil {
		fail(err)
	}
	rec := storetest.NewRecord("alice", time.Now())
	if err := s.Commit(ctx, rec); err != nil {
		fail(err)
	}
	rec.Version, rec.Data = 2, []byte("after update")
	if err := s.Commit(ctx, rec); err != nil {
		fail(err)
	}
	revoked := storetest.NewRecord("bob", time.Now())
	if err := s.Commit(ctx, revoked); err != nil {
		fail(err)
	}
	if _, err := s.BumpGeneration(ctx, "bob"); err != nil {
		fail(err)
	}
	fmt.Printf("ready %s %s\n", rec.Key, revoked.Key)
	time.Sleep(5 * time.Minute) // the parent kills us long before
	fail(errors.New("not killed"))
}

func parseKey(t *testing.T, s string) cloakroom.Key {
	t.Helper()
	var k cloakroom.Key
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(k) {
		t.Fatalf("bad key %q", s)
	}
	copy(k[:], b)
	return k
}

func schemaVersion(t *testing.T, db *sql.DB, prefix string) int {
	t.Helper()
	var v int
	q := "SELECT version FROM " + prefix + "schema_version WHERE component = 'cloakroom/sqlitestore'"
	if err := db.QueryRowContext(context.Background(), q).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReopenKeepsSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	first := schemaVersion(t, s.DB(), "")
	if first < 1 {
		t.Fatalf("schema version after first Open = %d, want at least 1", first)
	}
	rec := storetest.NewRecord("alice", time.Now())
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for i := 0; i < 2; i++ {
		s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if v := schemaVersion(t, s.DB(), ""); v != first {
			t.Fatalf("schema version after reopen = %d, want %d", v, first)
		}
		if _, found, err := s.Find(ctx, rec.Key); err != nil || !found {
			t.Fatalf("Find after reopen: found=%v err=%v", found, err)
		}
		s.Close()
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	current := schemaVersion(t, s.DB(), "")
	if _, err := s.DB().ExecContext(ctx, "UPDATE schema_version SET version = version + 1 WHERE component = 'cloakroom/sqlitestore'"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if !errors.Is(err, sqlitestore.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: err = %v, want ErrSchemaTooNew", err)
	}
	if want := fmt.Sprintf("schema version %d", current+1); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the version (%s)", err, want)
	}
}

// TestMigrationSharesFile checks that two stores with different prefixes,
// and an application's own tables, live side by side in one file.
func TestMigrationSharesFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "app.db")
	a := openStore(t, path, sqlitestore.Config{})
	if _, err := a.DB().ExecContext(ctx, "CREATE TABLE sessions_app_owned (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	b := openStore(t, path, sqlitestore.Config{TablePrefix: "other_"})
	rec := storetest.NewRecord("alice", time.Now())
	if err := a.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, found, err := b.Find(ctx, rec.Key); err != nil || found {
		t.Fatalf("store with another prefix: found=%v err=%v; want not found", found, err)
	}
	if v := schemaVersion(t, b.DB(), "other_"); v < 1 {
		t.Fatalf("prefixed schema version = %d", v)
	}
}

func TestRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, path := range []string{"", ":memory:", "file:x.db?mode=memory"} {
		if s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{}); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	if s, err := sqlitestore.Open(ctx, path, sqlitestore.Config{TablePrefix: "x; DROP TABLE y; --"}); err == nil {
		s.Close()
		t.Error("Open with an unsafe table prefix succeeded")
	}
}

func TestNewFileIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	path := filepath.Join(t.TempDir(), "sessions.db")
	openStore(t, path, sqlitestore.Config{})
	for _, name := range []string{path, path + "-wal"} {
		info, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(name), perm)
		}
	}
}

func countSessions(t *testing.T, s *sqlitestore.Store) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRowContext(context.Background(), "SELECT count(*) FROM sessions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{
		Now: clock.Now, PurgeInterval: -1, RelaxedDurability: true,
	})
	// More than one purge batch of short sessions, and one long session.
	const short = 1234
	for i := 0; i < short; i++ {
		rec := storetest.NewRecord(fmt.Sprintf("user-%d", i%10), clock.Now())
		rec.IdleTimeout = time.Minute
		if err := s.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	long := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(ctx, long); err != nil {
		t.Fatal(err)
	}

	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("Purge before expiry = %d, %v; want 0", n, err)
	}
	clock.Advance(time.Minute)
	n, err := s.Purge(ctx)
	if err != nil || n != short {
		t.Fatalf("Purge = %d, %v; want %d", n, err, short)
	}
	if left := countSessions(t, s); left != 1 {
		t.Fatalf("%d sessions left after purge, want 1", left)
	}
	if _, found, err := s.Find(ctx, long.Key); err != nil || !found {
		t.Fatalf("unexpired session after purge: found=%v err=%v", found, err)
	}
}

func TestBackgroundPurge(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	s, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{
		Now: clock.Now, PurgeInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	clock.Advance(rec.IdleTimeout)
	deadline := time.Now().Add(10 * time.Second)
	for countSessions(t, s) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("background purge did not delete the expired session")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestConnectionSettings checks the pragmas the durability and concurrency
// promises rest on.
func TestConnectionSettings(t *testing.T) {
	for _, tt := range []struct {
		relaxed     bool
		synchronous int
	}{{false, 2}, {true, 1}} { // FULL is 2, NORMAL is 1
		s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{RelaxedDurability: tt.relaxed})
		ctx := context.Background()
		// One connection, so every pragma below reads the same one.
		conn, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var journal string
		var synchronous, foreignKeys, busyTimeout, secureDelete int
		for _, p := range []struct {
			name string
			dst  any
		}{
			{"journal_mode", &journal},
			{"synchronous", &synchronous},
			{"foreign_keys", &foreignKeys},
			{"busy_timeout", &busyTimeout},
			{"secure_delete", &secureDelete},
		} {
			if err := conn.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(p.dst); err != nil {
				t.Fatalf("PRAGMA %s: %v", p.name, err)
			}
		}
		conn.Close()
		if journal != "wal" || synchronous != tt.synchronous || foreignKeys != 1 || busyTimeout != 5000 || secureDelete != 2 {
			t.Errorf("RelaxedDurability=%v: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d secure_delete=%d",
				tt.relaxed, journal, synchronous, foreignKeys, busyTimeout, secureDelete)
		}
	}
}

// TestExpiryNeverLate pins the millisecond rounding: a session stops being
// found at the start of the millisecond its expiry falls in.
func TestExpiryNeverLate(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{Now: clock.Now})
	rec := storetest.NewRecord("alice", clock.Now())
	rec.IdleTimeout = time.Minute + 500*time.Microsecond
	if err := s.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute - time.Millisecond)
	if _, found, err := s.Find(ctx, rec.Key); err != nil || !found {
		t.Fatalf("Find a millisecond before: found=%v err=%v", found, err)
	}
	clock.Advance(time.Millisecond)
	if _, found, err := s.Find(ctx, rec.Key); err != nil || found {
		t.Fatalf("Find in the expiry's millisecond: found=%v err=%v; want not found", found, err)
	}
}

// TestCreateReplacesDeadSession checks that an expired row left under a key
// does not block creating a session there, while a live one does.
func TestCreateReplacesDeadSession(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(storetest.Start)
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{Now: clock.Now, PurgeInterval: -1})
	old := storetest.NewRecord("alice", clock.Now())
	if err := s.Commit(ctx, old); err != nil {
		t.Fatal(err)
	}
	clock.Advance(old.IdleTimeout)
	fresh := storetest.NewRecord("bob", clock.Now())
	fresh.Key = old.Key
	if err := s.Commit(ctx, fresh); err != nil {
		t.Fatalf("create over an expired row: %v", err)
	}
	got, found, err := s.Find(ctx, fresh.Key)
	if err != nil || !found || got.UserID != "bob" {
		t.Fatalf("Find = %q, %v, %v; want bob's session", got.UserID, found, err)
	}
	if err := s.Commit(ctx, fresh); !errors.Is(err, cloakroom.ErrConflict) {
		t.Fatalf("create over a live row: err = %v, want ErrConflict", err)
	}
}

func TestPing(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestErrorsArePrefixed checks the wrapping of Commit's sentinel errors.
func TestErrorsArePrefixed(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{})
	rec := storetest.NewRecord("alice", time.Now())
	rec.Version = 2
	err := s.Commit(ctx, rec)
	if !errors.Is(err, cloakroom.ErrNotFound) || !strings.HasPrefix(err.Error(), "sqlitestore: ") {
		t.Fatalf("update of a missing session: err = %v", err)
	}
	rec.Version = 0
	if err := s.Commit(ctx, rec); err == nil {
		t.Fatal("Commit with version 0 succeeded")
	}
}

// benchStore returns a store holding n sessions and their keys.
func benchStore(b *testing.B, n int) (*sqlitestore.Store, []cloakroom.Key) {
	b.Helper()
	ctx := context.Background()
	s := openStore(b, filepath.Join(b.TempDir(), "sessions.db"), sqlitestore.Config{RelaxedDurability: true})
	keys := make([]cloakroom.Key, n)
	now := time.Now()
	for i := range keys {
		rec := storetest.NewRecord(fmt.Sprintf("user-%d", i%1000), now)
		rec.Data = bytes.Repeat([]byte("v"), 200)
		if err := s.Commit(ctx, rec); err != nil {
			b.Fatal(err)
		}
		keys[i] = rec.Key
	}
	return s, keys
}

func BenchmarkFind(b *testing.B) {
	s, keys := benchStore(b, 10_000)
	run := func(b *testing.B, ctx context.Context) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, found, err := s.Find(ctx, keys[i%len(keys)]); err != nil || !found {
				b.Fatalf("Find: found=%v err=%v", found, err)
			}
			i++
		}
	}
	b.Run("Background", func(b *testing.B) { run(b, context.Background()) })
	// A request's context can be canceled, which makes database/sql and
	// the driver watch it during the call.
	b.Run("Cancelable", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		run(b, ctx)
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, found, err := s.Find(ctx, keys[i%len(keys)]); err != nil || !found {
					b.Errorf("Find: found=%v err=%v", found, err)
					return
				}
				i += 7
			}
		})
	})
}

func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	for _, relaxed := range []bool{false, true} {
		b.Run(fmt.Sprintf("RelaxedDurability=%v", relaxed), func(b *testing.B) {
			s := openStore(b, filepath.Join(b.TempDir(), "sessions.db"), sqlitestore.Config{RelaxedDurability: relaxed})
			rec := storetest.NewRecord("alice", time.Now())
			if err := s.Commit(ctx, rec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				rec.Version++
				if err := s.Commit(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The background purge starts only once Open has built the whole Store:
// its first run, due at once here, reads the cache that Open installs
// after the statements are prepared (the race detector caught the purge
// reading it while Open still wrote it).
func TestPurgeStartsAfterOpen(t *testing.T) {
	clock := storetest.NewClock(storetest.Start)
	for range 5 {
		s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "sessions.db"), sqlitestore.Config{
			Now: clock.Now, PurgeInterval: time.Nanosecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}
