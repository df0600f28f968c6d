package gateway_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
)

func TestAdminFactorsListed(t *testing.T) {
	e := newTOTPEnv(t)
	enrolledAt := e.clock.Now()
	secret, codes := e.enrolTOTP("alice")
	b := e.browser()
	b.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r := b.postJSON("/auth/second-factor", map[string]string{"code": codes[0]}); r.Status != http.StatusOK {
		t.Fatalf("recovery code: %d %s", r.Status, r.Text)
	}

	r := e.adminDo(http.MethodGet, "/admin/users/ALICE/factors", e.token)
	if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET factors: %d %s", r.Status, r.Text)
	}
	got := r.json(t)
	if got["user"] != "alice" || got["totp"] != true || got["recovery_codes_left"] != float64(accounts.RecoveryCodeCount-1) ||
		got["since"] != enrolledAt.UTC().Format(time.RFC3339) {
		t.Errorf("factors of alice = %v", got)
	}
	// Never a secret, nor a recovery code or its hash.
	for _, leak := range append([]string{secret, "recovery\""}, codes...) {
		if strings.Contains(r.Text, leak) {
			t.Errorf("the answer holds %q: %s", leak, r.Text)
		}
	}

	r = e.adminDo(http.MethodGet, "/admin/users/bob/factors", e.token)
	if got := r.json(t); r.Status != http.StatusOK || got["user"] != "bob" || got["totp"] != false || got["recovery_codes_left"] != float64(0) || got["since"] != nil {
		t.Errorf("factors of bob: %d %s", r.Status, r.Text)
	}
	for path, want := range map[string]int{
		"/admin/users/nobody/factors":     http.StatusNotFound,
		"/admin/users/corp:1234/factors":  http.StatusNotFound, // not a local account's name
		"/admin/users/%00bad/factors":     http.StatusBadRequest,
		"/admin/users/alice/factors/totp": http.StatusNotFound,
	} {
		if r := e.adminDo(http.MethodGet, path, e.token); r.Status != want {
			t.Errorf("GET %s: %d %s, want %d", path, r.Status, r.Text, want)
		}
	}
	if r := e.adminDo(http.MethodGet, "/admin/users/alice/factors", "wrong-token"); r.Status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", r.Status)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/factors", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("reset without a token: %d", r.Status)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); !info.TOTP {
		t.Error("a refused reset removed the factor")
	}
}

// TestAdminFactorReset: the reset removes the factor and the recovery
// codes, is audited as the admin's, keeps the user's sessions, and ends a
// sign-in that was waiting for a code, even if the user enrols again.
func TestAdminFactorReset(t *testing.T) {
	e := newTOTPEnv(t)
	_, codes := e.enrolTOTP("alice")
	signedIn := e.browser()
	signedIn.postJSON("/auth/login", map[string]string{"username": "alice", "password": password})
	if r := signedIn.postJSON("/auth/second-factor", map[string]string{"code": codes[0]}); r.Status != http.StatusOK {
		t.Fatalf("recovery code: %d %s", r.Status, r.Text)
	}
	waiting := e.browser()
	if r := waiting.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusUnauthorized || waiting.pending == "" {
		t.Fatalf("login: %d %s", r.Status, r.Text)
	}

	r := e.adminDo(http.MethodDelete, "/admin/users/Alice/factors", e.token)
	if r.Status != http.StatusOK {
		t.Fatalf("reset: %d %s", r.Status, r.Text)
	}
	if got := r.json(t); got["user"] != "alice" || got["reset"] != true {
		t.Errorf("reset answer = %v", got)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); info.TOTP || info.RecoveryCodesLeft != 0 {
		t.Errorf("after the reset: %+v", info)
	}
	audit := e.logs.events("second factor reset")
	if len(audit) != 1 || audit[0]["by"] != "admin" || audit[0]["user"] != "alice" || audit[0]["outcome"] != "success" || audit[0]["remote"] == nil {
		t.Errorf("audit = %v", audit)
	}
	if !signedIn.loggedIn() {
		t.Error("the reset ended the user's session")
	}

	// The user enrols again at once; the sign-in that waited is over
	// anyway: neither the old recovery codes nor the new factor finish it.
	secret, _ := e.enrolTOTP("alice")
	if r := waiting.postJSON("/auth/second-factor", map[string]string{"code": codes[1]}); r.Status != http.StatusUnauthorized || waiting.token != "" {
		t.Fatalf("an old recovery code after the reset: %d %s", r.Status, r.Text)
	}
	if r := waiting.postJSON("/auth/second-factor", map[string]string{"code": e.totpCode(secret)}); r.Status != http.StatusUnauthorized ||
		r.json(t)["error"] != "second_factor_expired" || waiting.token != "" {
		t.Fatalf("the new factor's code on the sign-in begun before the reset: %d %s", r.Status, r.Text)
	}

	// A second reset finds nothing but the new factor; a third nothing.
	if got := e.adminDo(http.MethodDelete, "/admin/users/alice/factors", e.token).json(t); got["reset"] != true {
		t.Errorf("reset of the new factor = %v", got)
	}
	r = e.adminDo(http.MethodDelete, "/admin/users/alice/factors", e.token)
	if got := r.json(t); r.Status != http.StatusOK || got["reset"] != false {
		t.Errorf("reset without a factor: %d %v", r.Status, got)
	}
	if audit := e.logs.events("second factor reset"); len(audit) != 3 || audit[2]["outcome"] != "no_factor" {
		t.Errorf("audit of a reset without a factor = %v", audit)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/nobody/factors", e.token); r.Status != http.StatusNotFound {
		t.Errorf("reset of an unknown user: %d %s", r.Status, r.Text)
	}
}

func TestAdminFactorResetStoreDown(t *testing.T) {
	e := newTOTPEnv(t)
	e.enrolTOTP("alice")
	e.userDB.down.Store(true)
	r := e.adminDo(http.MethodDelete, "/admin/users/alice/factors", e.token)
	e.userDB.down.Store(false)
	if r.Status < 500 {
		t.Fatalf("reset with the account store down: %d %s", r.Status, r.Text)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); !info.TOTP {
		t.Error("the factor is gone after a failed reset")
	}
}

// plantPasskey stores a passkey for user as registration would have (a
// public key, a sign count, flags) and returns its id.
func (e *env) plantPasskey(user, name string, synced bool) string {
	e.t.Helper()
	id := make([]byte, 16)
	rand.Read(id)
	rec, err := e.users.Get(e.t.Context(), user)
	if err != nil {
		e.t.Fatal(err)
	}
	var stored struct {
		V    int              `json:"v"`
		Keys []map[string]any `json:"keys"`
	}
	stored.V = 1
	if rec.Passkeys != "" {
		if err := json.Unmarshal([]byte(rec.Passkeys), &stored); err != nil {
			e.t.Fatal(err)
		}
	}
	stored.Keys = append(stored.Keys, map[string]any{
		"name": name, "created": e.clock.Now().Unix(),
		"credential": map[string]any{
			"id": id, "publicKey": []byte("a public key, never shown"),
			"flags":         map[string]any{"userPresent": true, "userVerified": true, "backupEligible": synced, "backupState": synced},
			"authenticator": map[string]any{"signCount": 7},
		},
	})
	b, _ := json.Marshal(stored)
	encoded := string(b)
	if _, err := e.users.Update(e.t.Context(), user, accounts.Change{Passkeys: &encoded}); err != nil {
		e.t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(id)
}

// TestAdminPasskeysListedAndRemoved: the admin's factor listing names
// each passkey (name, created, last used, sign count, backup flags) and
// never its key; one passkey is removed by its id, audited as the
// admin's, the others and the sessions kept; the factor reset removes the
// app, the recovery codes and every passkey at once.
func TestAdminPasskeysListedAndRemoved(t *testing.T) {
	e := newTOTPEnv(t)
	e.enrolTOTP("alice")
	laptop := e.plantPasskey("alice", "laptop", false)
	phone := e.plantPasskey("alice", "phone", true)
	session := e.minted("alice")

	r := e.adminDo(http.MethodGet, "/admin/users/alice/factors", e.token)
	if r.Status != http.StatusOK || strings.Contains(r.Text, "public key") || strings.Contains(r.Text, "publicKey") {
		t.Fatalf("factors: %d %s", r.Status, r.Text)
	}
	list, _ := r.json(t)["passkeys"].([]any)
	if len(list) != 2 {
		t.Fatalf("passkeys listed: %s", r.Text)
	}
	first, second := list[0].(map[string]any), list[1].(map[string]any)
	if first["id"] != laptop || first["name"] != "laptop" || first["synced"] != false || first["sign_count"] != float64(7) || first["created"] == nil ||
		second["name"] != "phone" || second["synced"] != true || second["backed_up"] != true {
		t.Errorf("passkeys listed: %s", r.Text)
	}

	r = e.adminDo(http.MethodDelete, "/admin/users/Alice/passkeys/"+laptop, e.token)
	if r.Status != http.StatusOK {
		t.Fatalf("remove: %d %s", r.Status, r.Text)
	}
	if left, _ := e.accounts.Passkeys(t.Context(), "alice"); len(left) != 1 || left[0].ID != phone {
		t.Errorf("after the removal: %+v", left)
	}
	if info, _ := e.accounts.SecondFactors(t.Context(), "alice"); !info.TOTP {
		t.Error("the passkey's removal took the app too")
	}
	audit := e.logs.events("passkey removal")
	if len(audit) != 1 || audit[0]["by"] != "admin" || audit[0]["user"] != "alice" || audit[0]["passkey"] != laptop || audit[0]["outcome"] != "success" {
		t.Errorf("audit = %v", audit)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/passkeys/"+laptop, e.token); r.Status != http.StatusNotFound {
		t.Errorf("remove again: %d %s", r.Status, r.Text)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/nobody/passkeys/"+phone, e.token); r.Status != http.StatusNotFound {
		t.Errorf("remove from nobody: %d %s", r.Status, r.Text)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/passkeys/"+phone, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("remove without the admin token: %d %s", r.Status, r.Text)
	}

	r = e.adminDo(http.MethodDelete, "/admin/users/alice/factors", e.token)
	if got := r.json(t); r.Status != http.StatusOK || got["reset"] != true || got["totp"] != true || got["passkeys"] != float64(1) {
		t.Fatalf("reset: %d %s", r.Status, r.Text)
	}
	if left, _ := e.accounts.Passkeys(t.Context(), "alice"); len(left) != 0 {
		t.Errorf("passkeys after the reset: %+v", left)
	}
	if reset := e.logs.events("second factor reset"); len(reset) != 1 || reset[0]["passkeys"] != float64(1) || reset[0]["totp"] != true {
		t.Errorf("reset audit = %v", reset)
	}
	if !session.loggedIn() {
		t.Error("the removal or the reset ended the user's session")
	}
}
