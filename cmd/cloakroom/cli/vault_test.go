package cli

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/lab"
)

func TestCheckConfigVault(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	line, err := seal.NewKeyLine("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := writeFile(t, dir, "vault.keys", line+"\n", 0o600)
	open := writeFile(t, dir, "open.keys", line+"\n", 0o644)
	base := []string{"serve", "--check-config", "--store", "sqlite://" + dir + "/gw.db", "--upstream", "/api/=http://127.0.0.1:9000"}

	ok := append(append([]string{}, base...), "--vault", "/api/", "--vault-keys-file", keys,
		"--vault-capture", "POST /api/users/login user.token", "--vault-capture", "POST /api/users user.token",
		"--vault-header", "Authorization: Token", "--vault-user-claim", "id",
		"--vault-logout", "POST /api/users/logout", "--vault-cookie-only", "/api/", "--vault-strip-param", "token")
	if r := run(t, "", ok...); r.code != 0 {
		t.Fatalf("valid vault configuration refused: %s", r.stderr)
	}
	// The same settings from the JSON config file.
	file := writeFile(t, dir, "vault.json", `{"upstream": ["/api/=http://127.0.0.1:9000"], "vault": ["/api/"],
		"vault-keys-file": "`+keys+`", "vault-capture": ["POST /api/users/login user.token"],
		"vault-header": "Authorization: Token", "vault-drop-field": true, "vault-strip-param": ["token"]}`, 0o600)
	if r := run(t, "", "serve", "--check-config", "--store", "sqlite://"+dir+"/gw.db", "--config", file); r.code != 0 {
		t.Fatalf("vault settings from the config file refused: %s", r.stderr)
	}
	// The lab's vault app is configured as these flags say (docs/migrate.md).
	labArgs := append(append(append([]string{}, base...), "--vault-keys-file", keys), lab.VaultFlags...)
	if r := run(t, "", labArgs...); r.code != 0 {
		t.Fatalf("the lab's vault flags refused: %s", r.stderr)
	}

	bad := append(append([]string{}, base...), "--vault", "/api/", "--vault", "/other/", "--vault-keys-file", open,
		"--vault-capture", "POST /elsewhere/login user.token", "--vault-capture", "GET",
		"--vault-header", "Authorization: Two words", "--vault-cookie-only", "/nope/")
	r := run(t, "", bad...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{
		`--vault "/other/": no --upstream route`,
		"--vault-keys-file:",
		`--vault-capture "POST /elsewhere/login user.token": not under a --vault prefix`,
		`--vault-capture: capture "GET" is not "METHOD PATH FIELD"`,
		"--vault-header:",
		`--vault-cookie-only "/nope/"`,
		`--vault "/api/": no --vault-capture request`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r := run(t, "", append(append([]string{}, base...), "--vault-capture", "POST /api/x t")...); r.code != 1 || !strings.Contains(r.stderr, "without --vault") {
		t.Errorf("vault settings without --vault: exit %d %s", r.code, r.stderr)
	}
	for _, flag := range [][]string{{"--vault-strip-param", "token"}, {"--vault-drop-field"}, {"--vault-user-claim", "uid"}, {"--vault-header", "X-Token:"}} {
		if r := run(t, "", append(append([]string{}, base...), flag...)...); r.code != 1 || !strings.Contains(r.stderr, "without --vault") {
			t.Errorf("%s without --vault: exit %d %s", flag[0], r.code, r.stderr)
		}
	}
}

// TestServeVault runs `cloakroom serve` with the vault flags in front of a
// JWT app: its login answer is captured, the browser gets the placeholder,
// and the token is attached to the next call.
func TestServeVault(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	line, err := seal.NewKeyLine("k1")
	if err != nil {
		t.Fatal(err)
	}
	keys := writeFile(t, dir, "vault.keys", line+"\n", 0o600)
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"id":7,"username":"zoe"}`))
	jwt := "eyJhbGciOiJIUzI1NiJ9." + claims + ".c2lnbmF0dXJl"
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST" && r.URL.Path == "/api/users/login":
			io.WriteString(w, `{"user":{"username":"zoe","token":"`+jwt+`"}}`)
		case r.Header.Get("Authorization") == "Token "+jwt:
			io.WriteString(w, `{"user":{"username":"zoe"}}`)
		default:
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":{"body":["unauthorized"]}}`)
		}
	}))
	t.Cleanup(app.Close)
	srv := start(t, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--store", "sqlite://"+filepath.Join(dir, "gw.db"), "--upstream", "/api/="+app.URL,
		"--vault", "/api/", "--vault-keys-file", keys, "--vault-capture", "POST /api/users/login user.token",
		"--vault-header", "Authorization: Token", "--vault-user-claim", "id", "--log-format", "json")
	public, admin := srv.listening(t)
	c := newClient(t)

	res, err := c.Post(public+"/api/users/login", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var answer struct{ User struct{ Token string } }
	json.Unmarshal(body, &answer)
	var cookie string
	for _, ck := range res.Cookies() {
		if ck.Name == "__Host-Http-session" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if res.StatusCode != 200 || cookie == "" || !strings.HasPrefix(answer.User.Token, "cloakroom-vault.") || strings.Contains(string(body), "eyJ") {
		t.Fatalf("login through serve: %d %q %s", res.StatusCode, cookie, body)
	}
	req, _ := http.NewRequest("GET", public+"/api/user", nil)
	req.Header.Set("Cookie", cookie)
	req.Header.Set("Authorization", "Token "+answer.User.Token)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("vaulted call: %d", res.StatusCode)
	}
	if code, m := get(t, c, admin+"/metrics", ""); code != 200 || !strings.Contains(m, `cloakroom_vault_events_total{event="capture",route="/api/"} 1`) {
		t.Errorf("/metrics lacks the capture: %d", code)
	}
	if strings.Contains(srv.stderr.String(), claims) {
		t.Error("token material in the log")
	}
}
