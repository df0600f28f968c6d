package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// enrolInStore gives name a confirmed TOTP factor in the store, as the
// account page does, and returns its recovery codes and secret.
func enrolInStore(t *testing.T, store, name string) (string, []string) {
	t.Helper()
	ctx := context.Background()
	st, err := storeurl.Open(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := seal.Generate("k1")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC) // a fixed clock: the code is the one it shows
	svc := accounts.New(st.Accounts, accounts.Config{RevokeSessions: accounts.NoSessions, Throttle: st.Throttle,
		Logger: slog.New(slog.DiscardHandler), Sealer: keys, Now: func() time.Time { return now }})
	e, err := svc.BeginTOTP(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	code, err := accounts.TOTPCode(e.Secret, now)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := svc.ConfirmTOTP(ctx, name, e.Sealed, code)
	if err != nil {
		t.Fatal(err)
	}
	return e.Secret, codes
}

func TestUserFactorCommands(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)
	mustRun(t, "alice's long password\n", "user", "add", "alice", "--password-stdin", "--store", store)
	mustRun(t, "bob's long password\n", "user", "add", "bob", "--password-stdin", "--store", store)
	secret, codes := enrolInStore(t, store, "alice")

	r := mustRun(t, "", "user", "factors", "ALICE", "--store", store)
	if !strings.Contains(r.stdout, "alice: authenticator app (TOTP) since ") || !strings.Contains(r.stdout, "10 recovery codes left") {
		t.Errorf("user factors alice: %q", r.stdout)
	}
	for _, leak := range append([]string{secret}, codes...) {
		if strings.Contains(r.stdout+r.stderr, leak) {
			t.Errorf("user factors prints %q", leak)
		}
	}
	if r := mustRun(t, "", "user", "factors", "bob", "--store", store); r.stdout != "bob has no second factor: the password alone signs in\n" {
		t.Errorf("user factors bob: %q", r.stdout)
	}
	if r := run(t, "", "user", "factors", "zed", "--store", store); r.code != 1 || !strings.Contains(r.stderr, `no user "zed"`) {
		t.Errorf("user factors of a missing user: exit %d, %s", r.code, r.stderr)
	}

	// reset-factors asks for --yes, and without it changes nothing.
	key := plantSession(t, store, "alice", "h-alice")
	r = run(t, "", "user", "reset-factors", "alice", "--store", store)
	if r.code != 2 || !strings.Contains(r.stderr, "add --yes") {
		t.Errorf("reset-factors without --yes: exit %d, %s", r.code, r.stderr)
	}
	if r := mustRun(t, "", "user", "factors", "alice", "--store", store); !strings.Contains(r.stdout, "TOTP") {
		t.Fatalf("the factor is gone without --yes: %q", r.stdout)
	}
	r = mustRun(t, "", "user", "reset-factors", "alice", "--yes", "--store", store)
	if !strings.Contains(r.stdout, "removed the authenticator app and recovery codes of alice") || !strings.Contains(r.stdout, "cloakroom sessions revoke alice") {
		t.Errorf("reset-factors: %q", r.stdout)
	}
	if !sessionAlive(t, store, key) {
		t.Error("reset-factors ended alice's session")
	}
	if err := authenticate(t, store, "alice", "alice's long password"); err != nil {
		t.Errorf("the password alone after the reset: %v", err)
	}
	if r := mustRun(t, "", "user", "factors", "alice", "--store", store); !strings.Contains(r.stdout, "alice has no second factor") {
		t.Errorf("user factors after the reset: %q", r.stdout)
	}
	if r := mustRun(t, "", "user", "reset-factors", "alice", "--yes", "--store", store); r.stdout != "alice has no second factor; nothing to reset\n" {
		t.Errorf("reset-factors again: %q", r.stdout)
	}
	if r := run(t, "", "user", "reset-factors", "zed", "--yes", "--store", store); r.code != 1 || !strings.Contains(r.stderr, `no user "zed"`) {
		t.Errorf("reset-factors of a missing user: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, "", "user", "reset-factors", "--yes", "--store", store); r.code != 2 || !strings.Contains(r.stderr, "missing the user name") {
		t.Errorf("reset-factors without a name: exit %d, %s", r.code, r.stderr)
	}
}

func TestRequireSecondFactorChecked(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	_, keys := oidcFiles(t)
	base := []string{"serve", "--check-config", "--store", "sqlite://" + filepath.Join(dir, "gw.db")}
	for _, tc := range []struct {
		args []string
		want string // in stderr; "" for valid
	}{
		{[]string{"--require-second-factor", "admin", "--require-second-factor", "ops", "--totp-keys-file", keys}, ""},
		{[]string{"--require-second-factor", "admin,ops", "--totp-keys-file", keys}, ""},
		{[]string{"--require-second-factor", "admin"}, "--require-second-factor needs --totp-keys-file: local accounts of roles admin must be able to set up an authenticator app"},
		{[]string{"--require-second-factor", "a b", "--totp-keys-file", keys}, `--require-second-factor "a b": a role is 1 to 128 characters without spaces`},
		{[]string{"--require-factor-route", "/api/admin/", "--require-factor-route", "/api/billing/"}, ""},
		{[]string{"--require-factor-route", "api/admin/"}, `--require-factor-route "api/admin/": want a path prefix starting with /`},
	} {
		r := run(t, "", append(base, tc.args...)...)
		switch {
		case tc.want == "" && r.code != 0:
			t.Errorf("%q: exit %d\nstderr: %s", tc.args, r.code, r.stderr)
		case tc.want != "" && (r.code != 1 || !strings.Contains(r.stderr, tc.want)):
			t.Errorf("%q: exit %d, want 1 with %q\nstderr: %s", tc.args, r.code, tc.want, r.stderr)
		}
	}
}

// TestServeRequiresSecondFactorOfRole: serve passes --require-second-factor
// to the sign-in rules: an admin without a factor gets no session for the
// password, only the enrolment; a user of another role signs in.
func TestServeRequiresSecondFactorOfRole(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	store := createStore(t, filepath.Join(dir, "gw.db"))
	_, keys := oidcFiles(t)
	mustRun(t, "a long enough password\n", "user", "add", "alice", "--role", "admin", "--password-stdin", "--store", store)
	mustRun(t, "another long password\n", "user", "add", "bob", "--role", "dev", "--password-stdin", "--store", store)
	srv := start(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--store", store,
		"--require-second-factor", "admin", "--totp-keys-file", keys, "--log-format", "json")
	public, _ := srv.listening(t)
	c := newClient(t)

	body, _ := json.Marshal(map[string]string{"username": "alice", "password": "a long enough password"})
	res, err := c.Post(public+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var answer map[string]string
	json.Unmarshal(data, &answer)
	if res.StatusCode != http.StatusUnauthorized || answer["error"] != "second_factor_enrolment_required" || answer["enrolment_url"] != "/auth/second-factor/enrol" {
		t.Errorf("admin's login: %d %s", res.StatusCode, data)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "__Host-Http-session" && ck.Value != "" {
			t.Error("the admin's password alone set a session cookie")
		}
	}
	login(t, c, public, "bob", "another long password")
	c.CloseIdleConnections()
	if code := srv.stop(t); code != 0 {
		t.Fatalf("serve exited %d\n%s", code, srv.stderr)
	}
}

// plantPasskeyInStore stores a passkey for name as registration would
// (a public key, a sign count, flags) and returns its id.
func plantPasskeyInStore(t *testing.T, store, name, label string) string {
	t.Helper()
	ctx := context.Background()
	st, err := storeurl.Open(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id := []byte("0123456789abcdef-" + label)
	b, _ := json.Marshal(map[string]any{"v": 1, "keys": []any{map[string]any{
		"name": label, "created": time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC).Unix(),
		"credential": map[string]any{
			"id": id, "publicKey": []byte("PUBLIC-KEY-BYTES"),
			"flags":         map[string]any{"userPresent": true, "userVerified": true, "backupEligible": true, "backupState": true},
			"authenticator": map[string]any{"signCount": 3},
		},
	}}})
	encoded := string(b)
	if _, err := st.Accounts.Update(ctx, name, accounts.Change{Passkeys: &encoded}); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(id)
}

// TestUserPasskeyCommands: user factors lists a user's passkeys (name,
// kind, dates, count, id; never the key); remove-passkey asks for --yes
// and removes one by its id; reset-factors removes the app and the
// passkeys together; the sessions stay.
func TestUserPasskeyCommands(t *testing.T) {
	clearEnv(t)
	store := tempStore(t)
	mustRun(t, "carol's long password\n", "user", "add", "carol", "--password-stdin", "--store", store)
	id := plantPasskeyInStore(t, store, "carol", "phone")
	key := plantSession(t, store, "carol", "h-carol")

	r := mustRun(t, "", "user", "factors", "carol", "--store", store)
	want := "carol: no authenticator app\n  passkey \"phone\": synced, added 2026-12-07 09:00, last used never, sign count 3, id " + id + "\n"
	if r.stdout != want {
		t.Errorf("user factors carol:\n%q\nwant\n%q", r.stdout, want)
	}
	if strings.Contains(r.stdout, base64.StdEncoding.EncodeToString([]byte("PUBLIC-KEY-BYTES"))) || strings.Contains(r.stdout, "PUBLIC") {
		t.Error("user factors prints the public key")
	}

	if r := run(t, "", "user", "remove-passkey", "carol", id, "--store", store); r.code != 2 || !strings.Contains(r.stderr, "add --yes") {
		t.Errorf("remove-passkey without --yes: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, "", "user", "remove-passkey", "carol", "--yes", "--store", store); r.code != 2 || !strings.Contains(r.stderr, "a user name and a passkey id") {
		t.Errorf("remove-passkey without an id: exit %d, %s", r.code, r.stderr)
	}
	r = mustRun(t, "", "user", "remove-passkey", "carol", id, "--yes", "--store", store)
	if !strings.Contains(r.stdout, "removed passkey "+id+" of carol") {
		t.Errorf("remove-passkey: %q", r.stdout)
	}
	if r := run(t, "", "user", "remove-passkey", "carol", id, "--yes", "--store", store); r.code != 1 || !strings.Contains(r.stderr, "carol has no passkey") {
		t.Errorf("remove-passkey again: exit %d, %s", r.code, r.stderr)
	}
	if r := mustRun(t, "", "user", "factors", "carol", "--store", store); r.stdout != "carol has no second factor: the password alone signs in\n" {
		t.Errorf("user factors after the removal: %q", r.stdout)
	}

	// The reset takes the app and every passkey at once.
	enrolInStore(t, store, "carol")
	plantPasskeyInStore(t, store, "carol", "laptop")
	r = mustRun(t, "", "user", "reset-factors", "carol", "--yes", "--store", store)
	if !strings.Contains(r.stdout, "removed the authenticator app and recovery codes and 1 passkey(s) of carol") {
		t.Errorf("reset-factors: %q", r.stdout)
	}
	if r := mustRun(t, "", "user", "factors", "carol", "--store", store); !strings.Contains(r.stdout, "carol has no second factor") {
		t.Errorf("user factors after the reset: %q", r.stdout)
	}
	if !sessionAlive(t, store, key) {
		t.Error("the passkey commands ended carol's session")
	}
}
