package testservers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres returns the URL of a PostgreSQL server for tests, trying in turn:
//
//  1. the URL in $CLOAKROOM_TEST_POSTGRES;
//  2. a local server at 127.0.0.1:5432, database "test", trust
//     authentication, as user postgres or root;
//  3. a throwaway server started from the system binaries (see
//     [StartPostgres]), stopped when t's test ends.
//
// If none works, the test is skipped with the reasons, or fails when
// $CLOAKROOM_REQUIRE_SERVICES is 1. Tests share the server, so each must
// isolate itself, for instance in a schema of its own.
func Postgres(t testing.TB) string {
	t.Helper()
	if url := os.Getenv("CLOAKROOM_TEST_POSTGRES"); url != "" {
		return url
	}
	var reasons []string
	for _, role := range []string{"postgres", "root"} {
		url := "postgres://" + role + "@127.0.0.1:5432/test?sslmode=disable"
		err := pgProbe(url)
		if err == nil {
			return url
		}
		reasons = append(reasons, fmt.Sprintf("%s: %v", url, err))
	}
	srv, err := pgStart(t)
	if err != nil {
		reasons = append(reasons, "throwaway server: "+err.Error())
		pgUnavailable(t, reasons)
	}
	return srv.URL
}

// PostgresServer is a throwaway PostgreSQL server owned by one test.
type PostgresServer struct {
	// URL connects as the superuser postgres to database postgres.
	URL string

	dir      string   // temporary directory holding data, socket and log
	pgCtl    string   // path of pg_ctl
	runAs    []string // command prefix dropping root privileges, if any
	stopOnce sync.Once
}

// StartPostgres starts a private server from the system's initdb and
// pg_ctl, for tests that need to stop a server under a client. It skips
// the test (or fails it, with $CLOAKROOM_REQUIRE_SERVICES=1) when it cannot.
// The server is stopped when t's test ends, if not before.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	srv, err := pgStart(t)
	if err != nil {
		pgUnavailable(t, []string{"throwaway server: " + err.Error()})
	}
	return srv
}

// Stop shuts the server down at once and removes its files. It is safe to
// call more than once.
func (s *PostgresServer) Stop() {
	s.stopOnce.Do(func() {
		cmd := pgCommand(s.dir, s.runAs, s.pgCtl, "stop", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w")
		cmd.CombinedOutput() // a server that is already gone is fine
		os.RemoveAll(s.dir)
	})
}

func pgUnavailable(t testing.TB, reasons []string) {
	t.Helper()
	msg := "no PostgreSQL server for tests (set CLOAKROOM_TEST_POSTGRES):\n\t" + strings.Join(reasons, "\n\t")
	if os.Getenv("CLOAKROOM_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// pgProbe reports whether a server answers at url.
func pgProbe(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func pgStart(t testing.TB) (*PostgresServer, error) {
	t.Helper()
	initdb, pgCtl, err := pgBinaries()
	if err != nil {
		return nil, err
	}
	runAs, owner, err := pgUnprivileged()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parents are private to root, and the server may
	// run as another user.
	dir, err := os.MkdirTemp("", "cloakroom-pg-")
	if err != nil {
		return nil, err
	}
	srv := &PostgresServer{dir: dir, pgCtl: pgCtl, runAs: runAs}
	if owner != nil {
		if err := os.Chown(dir, owner.uid, owner.gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	out, err := pgCommand(dir, runAs, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(out))
	}
	// The port is free when chosen but may be taken before the server
	// binds it, so a failed start is retried on another port.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c max_connections=200", port, dir)
		out, err := pgCommand(dir, runAs, pgCtl, "start", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o", opts).CombinedOutput()
		if err == nil {
			srv.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			srv.Stop()
			return nil, fmt.Errorf("pg_ctl start: %v: %s %s", err, lastLines(out), lastLines(log))
		}
	}
	t.Cleanup(srv.Stop)
	if err := pgProbe(srv.URL); err != nil {
		srv.Stop()
		return nil, fmt.Errorf("throwaway server started but does not answer: %w", err)
	}
	return srv, nil
}

// pgBinaries finds initdb and pg_ctl in PATH, else in the newest
// /usr/lib/postgresql/*/bin (Debian keeps them out of PATH).
func pgBinaries() (initdb, pgCtl string, err error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if pgCtl, err := exec.LookPath("pg_ctl"); err == nil {
			return initdb, pgCtl, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	for _, dir := range dirs {
		initdb, pgCtl := filepath.Join(dir, "initdb"), filepath.Join(dir, "pg_ctl")
		if pgExecutable(initdb) && pgExecutable(pgCtl) {
			return initdb, pgCtl, nil
		}
	}
	return "", "", errors.New("initdb and pg_ctl not found in PATH or /usr/lib/postgresql/*/bin")
}

// pgMajor is the version number in /usr/lib/postgresql/<major>/bin.
func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func pgExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}

type pgOwner struct{ uid, gid int }

// pgUnprivileged returns how to run the server's binaries: as is, or,
// since initdb and postgres refuse to run as root, through runuser or
// setpriv as the postgres (or nobody) user, whom the files must belong to.
func pgUnprivileged() (prefix []string, owner *pgOwner, err error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	var account *user.User
	for _, name := range []string{"postgres", "nobody"} {
		if account, err = user.Lookup(name); err == nil {
			break
		}
	}
	if account == nil {
		return nil, nil, errors.New("running as root and no postgres or nobody user to run the server as")
	}
	uid, err1 := strconv.Atoi(account.Uid)
	gid, err2 := strconv.Atoi(account.Gid)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("user %s has a non-numeric uid or gid", account.Username)
	}
	owner = &pgOwner{uid: uid, gid: gid}
	if runuser := pgFind("runuser", "/usr/sbin/runuser", "/sbin/runuser"); runuser != "" {
		return []string{runuser, "-u", account.Username, "--"}, owner, nil
	}
	if setpriv := pgFind("setpriv", "/usr/bin/setpriv", "/bin/setpriv"); setpriv != "" {
		return []string{setpriv, "--reuid=" + account.Uid, "--regid=" + account.Gid, "--clear-groups", "--"}, owner, nil
	}
	return nil, nil, errors.New("running as root and neither runuser nor setpriv is available to drop privileges")
}

// pgFind looks name up in PATH, then at the fallback paths, since the
// sbin directories are often missing from a non-login PATH.
func pgFind(name string, fallbacks ...string) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, path := range fallbacks {
		if pgExecutable(path) {
			return path
		}
	}
	return ""
}

func pgCommand(dir string, prefix []string, name string, args ...string) *exec.Cmd {
	argv := append(append(slices.Clone(prefix), name), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	// The unprivileged user may not be able to enter the test's directory.
	cmd.Dir = dir
	// Keep the user's locale settings from leaking into initdb.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}
