package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
)

// tempStore creates an empty store in a folder of its own and returns its
// URL.
func tempStore(t *testing.T) string {
	return createStore(t, filepath.Join(t.TempDir(), "cloakroom.db"))
}

// createStore creates an empty SQLite store at path, as serve does on its
// first start (the user and sessions commands never create one), and
// returns its URL.
func createStore(t *testing.T, path string) string {
	t.Helper()
	store := "sqlite://" + path
	st, err := storeurl.OpenWith(t.Context(), store, storeurl.Options{CreateSQLite: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	return store
}

// plantSession stores a live session for user directly in the store, as a
// login would, and returns its key.
func plantSession(t *testing.T, store, user, handle string) cloakroom.Key {
	t.Helper()
	ctx := context.Background()
	st, err := storeurl.Open(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gen, err := st.Sessions.Generation(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	var key cloakroom.Key
	copy(key[:], handle+"-"+user+strings.Repeat("#", 32))
	now := time.Now()
	rec := cloakroom.Record{Key: key, Handle: handle, UserID: user, Generation: gen, Version: 1,
		CreatedAt: now, LastSeen: now, IdleTimeout: time.Hour, AbsoluteDeadline: now.Add(2 * time.Hour),
		IP: "192.0.2.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}
	if err := st.Sessions.Commit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	return key
}

func sessionAlive(t *testing.T, store string, key cloakroom.Key) bool {
	t.Helper()
	st, err := storeurl.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, found, err := st.Sessions.Find(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func authenticate(t *testing.T, store, user, password string) error {
	t.Helper()
	st, err := storeurl.Open(context.Background(), store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc := accounts.New(st.Accounts, accounts.Config{RevokeSessions: accounts.NoSessions, Throttle: st.Throttle, Logger: slog.New(slog.DiscardHandler)})
	_, err = svc.Login(context.Background(), accounts.LoginAttempt{Name: user, Password: password, ClientIP: "127.0.0.1"})
	return err
}

func TestUserCommands(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)

	r := mustRun(t, "correct horse battery staple\n", "user", "add", "alice", "--role", "admin", "--role", "ops,dev", "--email", "alice@example.com", "--password-stdin", "--store", store)
	if !strings.Contains(r.stdout, "added user alice with roles admin, ops, dev") || strings.Contains(r.stdout, "password") {
		t.Errorf("user add: %q", r.stdout)
	}
	if err := authenticate(t, store, "alice", "correct horse battery staple"); err != nil {
		t.Fatalf("alice cannot log in with the password from stdin: %v", err)
	}

	// Without --password-stdin a password is generated and printed once;
	// flags may also come before the name.
	r = mustRun(t, "", "user", "add", "--store", store, "bob")
	m := regexp.MustCompile(`password for bob .*\n\s+(\S+)`).FindStringSubmatch(r.stdout)
	if m == nil || len(m[1]) < 20 {
		t.Fatalf("no generated password printed: %q", r.stdout)
	}
	if err := authenticate(t, store, "bob", m[1]); err != nil {
		t.Fatalf("bob cannot log in with the generated password: %v", err)
	}

	if r := run(t, "another long password", "user", "add", "alice", "--password-stdin", "--store", store); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("adding alice twice: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, "short\n", "user", "add", "carol", "--password-stdin", "--store", store); r.code != 1 || !strings.Contains(r.stderr, "password") {
		t.Errorf("a short password: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, "\n", "user", "add", "carol", "--password-stdin", "--store", store); r.code != 1 || !strings.Contains(r.stderr, "no password") {
		t.Errorf("an empty stdin: exit %d, %s", r.code, r.stderr)
	}

	r = mustRun(t, "", "user", "list", "--store", store)
	for _, want := range []string{"NAME", "alice", "admin,ops,dev", "alice@example.com", "bob", "active"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("user list lacks %q:\n%s", want, r.stdout)
		}
	}

	// passwd ends the user's sessions.
	alices := plantSession(t, store, "alice", "h-alice")
	r = mustRun(t, "a brand new passphrase\r\n", "user", "passwd", "alice", "--password-stdin", "--store", store)
	if !strings.Contains(r.stdout, "ended all their sessions") {
		t.Errorf("passwd: %q", r.stdout)
	}
	if sessionAlive(t, store, alices) {
		t.Error("alice's session survived the password change")
	}
	if err := authenticate(t, store, "alice", "a brand new passphrase"); err != nil {
		t.Errorf("new password (CRLF stripped) does not work: %v", err)
	}

	// disable ends sessions and refuses logins; enable restores.
	bobs := plantSession(t, store, "bob", "h-bob")
	mustRun(t, "", "user", "disable", "bob", "--store", store)
	if sessionAlive(t, store, bobs) {
		t.Error("bob's session survived disable")
	}
	r = mustRun(t, "", "user", "list", "--json", "--store", store)
	var users []struct {
		Name     string
		Roles    []string
		Disabled bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &users); err != nil {
		t.Fatalf("user list --json: %v\n%s", err, r.stdout)
	}
	if len(users) != 2 || users[1].Name != "bob" || !users[1].Disabled || users[0].Disabled {
		t.Errorf("after disable: %+v", users)
	}
	mustRun(t, "", "user", "enable", "bob", "--store", store)
	if r := mustRun(t, "", "user", "list", "--store", store); strings.Contains(r.stdout, "disabled") {
		t.Errorf("bob still disabled after enable:\n%s", r.stdout)
	}

	// delete ends sessions and removes the user.
	bobs = plantSession(t, store, "bob", "h-bob2")
	mustRun(t, "", "user", "delete", "bob", "--store", store)
	if sessionAlive(t, store, bobs) {
		t.Error("bob's session survived delete")
	}
	r = mustRun(t, "", "user", "list", "--store", store)
	if strings.Contains(r.stdout, "bob") {
		t.Errorf("bob still listed:\n%s", r.stdout)
	}
	for _, sub := range []string{"delete", "disable", "enable"} {
		if r := run(t, "", "user", sub, "bob", "--store", store); r.code != 1 || !strings.Contains(r.stderr, `no user "bob"`) {
			t.Errorf("user %s of a missing user: exit %d, %s", sub, r.code, r.stderr)
		}
	}
}

func TestUserStoreFromEnvironment(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)
	t.Setenv("CLOAKROOM_STORE", store)
	mustRun(t, "", "user", "add", "dora")
	if r := mustRun(t, "", "user", "list"); !strings.Contains(r.stdout, "dora") {
		t.Errorf("CLOAKROOM_STORE not used: %s", r.stdout)
	}
	if r := run(t, "", "user", "list", "--store", "redis://127.0.0.1:1"); r.code != 1 || !strings.Contains(r.stderr, "cloakroom user list: connect to redis://127.0.0.1:1: ") {
		t.Errorf("unreachable redis store: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, "", "user", "list", "--store", "nonsense"); r.code != 1 || !strings.Contains(r.stderr, "no scheme") {
		t.Errorf("bad store URL: exit %d, %s", r.code, r.stderr)
	}
}

func TestSessionsCommands(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)
	first := plantSession(t, store, "alice", "handle-one")
	second := plantSession(t, store, "alice", "handle-two")
	other := plantSession(t, store, "bob", "handle-bob")

	r := mustRun(t, "", "sessions", "list", "alice", "--store", store)
	for _, want := range []string{"HANDLE", "handle-one", "handle-two", "192.0.2.7", "Firefox"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sessions list lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "handle-bob") {
		t.Error("alice's list shows bob's session")
	}
	r = mustRun(t, "", "sessions", "list", "alice", "--json", "--store", store)
	var devices []cloakroom.Device
	if err := json.Unmarshal([]byte(r.stdout), &devices); err != nil || len(devices) != 2 {
		t.Fatalf("sessions list --json: %v %s", err, r.stdout)
	}

	mustRun(t, "", "sessions", "revoke", "alice", "--handle", "handle-one", "--store", store)
	if sessionAlive(t, store, first) || !sessionAlive(t, store, second) {
		t.Error("revoke --handle ended the wrong sessions")
	}
	if r := run(t, "", "sessions", "revoke", "alice", "--handle", "handle-bob", "--store", store); r.code != 1 || !strings.Contains(r.stderr, "no session with handle") {
		t.Errorf("revoking another user's handle: exit %d, %s", r.code, r.stderr)
	}
	if !sessionAlive(t, store, other) {
		t.Error("bob's session was ended through alice")
	}

	mustRun(t, "", "sessions", "revoke", "alice", "--store", store)
	if sessionAlive(t, store, second) {
		t.Error("revoke without --handle left a session")
	}
	if !sessionAlive(t, store, other) {
		t.Error("revoking alice ended bob's session")
	}
	if r := mustRun(t, "", "sessions", "list", "alice", "--store", store); !strings.Contains(r.stdout, "no live sessions") {
		t.Errorf("after revoking all: %s", r.stdout)
	}
}

// TestSessionsCommandsIgnoreCase: user names are case-insensitive at login,
// so "sessions list/revoke ALICE" finds alice's sessions.
func TestSessionsCommandsIgnoreCase(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)
	mustRun(t, "alice's long password\n", "user", "add", "alice", "--password-stdin", "--store", store)
	key := plantSession(t, store, "alice", "handle-one")
	if r := mustRun(t, "", "sessions", "list", "ALICE", "--store", store); !strings.Contains(r.stdout, "handle-one") {
		t.Errorf("sessions list ALICE does not show alice's session:\n%s", r.stdout)
	}
	mustRun(t, "", "sessions", "revoke", "Alice", "--store", store)
	if sessionAlive(t, store, key) {
		t.Error("sessions revoke Alice left alice logged in")
	}
}
