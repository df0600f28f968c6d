package storeurl_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw, kind, path string
	}{
		{"sqlite://./cloakroom.db", "sqlite", "./cloakroom.db"},
		{"sqlite://cloakroom.db", "sqlite", "cloakroom.db"},
		{"sqlite:///var/lib/cloakroom/db.sqlite", "sqlite", "/var/lib/cloakroom/db.sqlite"},
		{"SQLite://../data/x.db", "sqlite", "../data/x.db"},
		{"sqlite://./with space.db", "sqlite", "./with space.db"},
		{"redis://localhost:6379/0", "redis", ""},
		{"rediss://cache.internal:6380", "redis", ""},
		{"postgres://cloakroom@db:5432/cloakroom", "postgres", ""},
		{"postgresql://db/cloakroom", "postgres", ""},
	} {
		loc, err := storeurl.Parse(tc.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.raw, err)
			continue
		}
		if loc.Kind != tc.kind || loc.Path != tc.path {
			t.Errorf("Parse(%q) = %q %q, want %q %q", tc.raw, loc.Kind, loc.Path, tc.kind, tc.path)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ raw, wantInMsg string }{
		{"", "empty"},
		{"./cloakroom.db", "no scheme"},
		{"mysql://db/x", "unknown scheme"},
		{"sqlite://", "needs a file path"},
		{"sqlite://./x.db?mode=ro", "query parameters"},
		{"sqlite://:memory:", "in-memory"},
		{"sqlite://./data/", "directory"},
		{"sqlite://./x\x00.db", "control character"},
		{"redis://", "needs a host"},
		{"postgres:///dbname", "needs a host"},
		{"sqlite://" + strings.Repeat("a", 5000), "longer than"},
	} {
		_, err := storeurl.Parse(tc.raw)
		if !errors.Is(err, storeurl.ErrInvalidURL) {
			t.Errorf("Parse(%q): got %v, want ErrInvalidURL", tc.raw, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantInMsg) {
			t.Errorf("Parse(%q): %q does not say %q", tc.raw, err, tc.wantInMsg)
		}
	}
}

func TestErrorsNeverShowPasswords(t *testing.T) {
	for _, raw := range []string{
		"postgres://admin:hunter2@db:5432/x",
		"redis://:hunter2@cache:6379",
		"postgres://admin:hunter2@db:bad port/x",
		"mysql://admin:hunter2@db/x",
	} {
		loc, err := storeurl.Parse(raw)
		if err == nil {
			_, err = storeurl.Open(context.Background(), raw)
			if strings.Contains(loc.String(), "hunter2") {
				t.Errorf("Location.String() shows the password: %s", loc)
			}
		}
		if err == nil {
			t.Fatalf("Open(%q) succeeded", raw)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.db")
	st, err := storeurl.OpenWith(ctx, "sqlite://"+path, storeurl.Options{CreateSQLite: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("database file mode %v, want owner-only", perm)
	}
	if _, ok := st.Sessions.(cloakroom.Pinger); !ok {
		t.Error("the sqlite session store does not implement cloakroom.Pinger")
	}
	// Both stores work on the same file.
	now := time.Now()
	rec := cloakroom.Record{Key: cloakroom.Key{1}, Handle: "h", UserID: "alice", Version: 1,
		CreatedAt: now, LastSeen: now, IdleTimeout: time.Hour, AbsoluteDeadline: now.Add(2 * time.Hour)}
	if err := st.Sessions.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, found, err := st.Sessions.Find(ctx, rec.Key); err != nil || !found {
		t.Fatalf("Find: found=%v err=%v", found, err)
	}
	if st.Accounts == nil {
		t.Fatal("no account store")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening keeps the session; a relative URL names the same file.
	t.Chdir(dir)
	st2, err := storeurl.Open(ctx, "sqlite://./gw.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, found, err := st2.Sessions.Find(ctx, rec.Key); err != nil || !found {
		t.Fatalf("after reopening: found=%v err=%v", found, err)
	}
}

// TestOpenSQLiteCreatesOnlyWhenAsked: without Options.CreateSQLite a
// missing database file is an error and no file appears, so a mistyped
// path in a command that manages users never makes an empty database.
func TestOpenSQLiteCreatesOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nope.db")
	_, err := storeurl.Open(t.Context(), "sqlite://"+path)
	if !errors.Is(err, storeurl.ErrNoDatabase) || err.Error() != "store does not exist: sqlite: no file "+path {
		t.Errorf("got %v, want ErrNoDatabase", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open without CreateSQLite made %s (stat: %v)", path, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "folder.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := storeurl.Open(t.Context(), "sqlite://"+filepath.Join(dir, "folder.db")); err == nil || !strings.Contains(err.Error(), "is a folder, not a database file") {
		t.Errorf("a folder as the database: %v", err)
	}
	st, err := storeurl.OpenWith(t.Context(), "sqlite://"+path, storeurl.Options{CreateSQLite: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = storeurl.Open(t.Context(), "sqlite://"+path)
	if err != nil {
		t.Fatalf("the existing database: %v", err)
	}
	st.Close()
}

func TestOpenSQLiteMissingFolder(t *testing.T) {
	_, err := storeurl.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "nope", "x.db"))
	if !errors.Is(err, storeurl.ErrInvalidURL) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("got %v, want a missing-folder error", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"sqlite://./cloakroom.db", "sqlite:///abs/x.db", "redis://u:p@h:1/0", "postgres://h/db",
		"", "://", "sqlite://", "sqlite://?#", "SQLITE://x", "postgres://[::1", "redis://%zz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := storeurl.Parse(raw)
		if err != nil {
			if !errors.Is(err, storeurl.ErrInvalidURL) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalidURL", raw, err)
			}
			return
		}
		switch loc.Kind {
		case "sqlite":
			if loc.Path == "" || strings.ContainsAny(loc.Path, "\x00?#") || loc.URL != nil {
				t.Fatalf("Parse(%q) = %+v", raw, loc)
			}
		case "redis", "postgres":
			if loc.URL == nil || loc.URL.Host == "" {
				t.Fatalf("Parse(%q) = %+v without a host", raw, loc)
			}
			if p, ok := loc.URL.User.Password(); ok && p != "" && p != "xxxxx" && strings.Contains(loc.String(), ":"+p+"@") {
				t.Fatalf("String() shows the password of %q: %s", raw, loc)
			}
		default:
			t.Fatalf("Parse(%q) kind %q", raw, loc.Kind)
		}
	})
}

func TestLocationStringHidesPasswords(t *testing.T) {
	for _, raw := range []string{
		"postgres://app:s3cret@db.example:5432/x",
		"postgres://db.example/x?user=app&password=s3cret",
		"redis://:s3cret@cache.example:6379",
	} {
		loc, err := storeurl.Parse(raw)
		if err != nil {
			t.Fatalf("Parse(%q): %v", raw, err)
		}
		if strings.Contains(loc.String(), "s3cret") {
			t.Errorf("Location(%q).String() = %q shows the password", raw, loc.String())
		}
	}
	if _, err := storeurl.Parse("postgres://app:pa#ss@db/x"); err == nil || strings.Contains(err.Error(), "ss@") || strings.Contains(err.Error(), "pa#") {
		t.Errorf("Parse error shows part of the password: %v", err)
	}
}

// TestCheck: Check refuses what Open would refuse before connecting, the
// options of network stores included, and names what is accepted but
// unsafe, without a password.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		raw, err, warning string
	}{
		{"sqlite://./cloakroom.db", "", ""},
		{"redis://127.0.0.1:6379/0", "", ""},
		{"rediss://cache.internal:6380", "", ""},
		{"redis://u:secret@cache.internal:6379/0", "", "the Redis connection to redis://u:xxxxx@cache.internal:6379/0 is not encrypted; sessions and password hashes cross the network in clear text: use rediss://"},
		{"postgres://u:secret@db.internal/x?sslmode=require", "", "the PostgreSQL connection to postgres://u:xxxxx@db.internal/x?sslmode=require is not verified TLS; sessions and password hashes may cross the network readable or to an impostor: add sslmode=verify-full"},
		{"postgres://db.internal/x?sslmode=verify-full", "", ""},
		{"redis://127.0.0.1:6379?prefx=a", `invalid store URL: redis: unknown option "prefx"`, ""},
		{"postgres://127.0.0.1/x?cache=maybe", `invalid store URL: postgres: cache must be on or off, not "maybe"`, ""},
		{"mysql://db/x", `invalid store URL: unknown scheme "mysql"`, ""},
	} {
		_, warnings, err := storeurl.Check(tc.raw)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Check(%s): %v", tc.raw, err)
		case tc.err != "" && (!errors.Is(err, storeurl.ErrInvalidURL) || !strings.HasPrefix(err.Error(), tc.err)):
			t.Errorf("Check(%s): %v, want %s", tc.raw, err, tc.err)
		}
		if got := strings.Join(warnings, "\n"); got != tc.warning {
			t.Errorf("Check(%s) warnings:\n got %q\nwant %q", tc.raw, got, tc.warning)
		}
	}
}
