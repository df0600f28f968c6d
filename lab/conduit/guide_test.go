package conduit

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/internal/doctest"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
)

// The guide's ports: the example app's API, the gateway, its admin
// listener.
var guidePorts = []string{"127.0.0.1:3000", "127.0.0.1:8080", "127.0.0.1:9090"}

// TestMigrateGuideAsWritten follows docs/migrate.md literally: every sh
// block of the page, in order, as one bash script run from the
// repository's root, with a HOME of its own. The script builds the gateway
// and the example app, starts the app from an empty folder, writes the key
// file and runs `cloakroom serve` with the guide's flags. Then an API
// client that sends only its token (no Origin, no X-CSRF-Token) signs up,
// signs in and writes through the gateway, and receives no JWT.
func TestMigrateGuideAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and runs the guide's commands")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "migrate.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := doctest.ShellBlocks(string(doc))
	script := strings.Join(blocks, "\n")
	for _, want := range []string{"go build", "conduit -write-spa dist", "vault.keys", "cloakroom serve", "--public /", "--vault-end-forgotten /api/"} {
		if !strings.Contains(script, want) {
			t.Fatalf("the guide's sh blocks have no %q:\n%s", want, script)
		}
	}
	for _, addr := range guidePorts {
		doctest.WaitFree(t, addr, "the guide's commands need it")
	}

	home := t.TempDir()
	env := doctest.NewcomerEnv(t, home)
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir, cmd.Env = root, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var output syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // the gateway and the app, started by the script
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// The script ends in the gateway, which runs until it is stopped: wait
	// until it and the app answer (the build comes first).
	ready := func() bool {
		for _, u := range []string{"http://127.0.0.1:8080/", "http://127.0.0.1:3000/api/articles"} {
			res, err := http.Get(u)
			if err != nil {
				return false
			}
			res.Body.Close()
		}
		return true
	}
	for !ready() {
		select {
		case err := <-exited:
			t.Fatalf("the guide's commands stopped (%v):\n%s", err, output.String())
		case <-time.After(200 * time.Millisecond):
		}
	}

	res, err := http.Get("http://127.0.0.1:8080/")
	if err != nil {
		t.Fatal(err)
	}
	page := new(bytes.Buffer)
	page.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(page.String(), "app.js") {
		t.Fatalf("GET / through the gateway: %d, want the SPA's page (--public /)\n%s", res.StatusCode, page)
	}
	c := newAPIClient(t, "http://127.0.0.1:8080")
	status, answer := c.do("POST", "/api/users", map[string]any{"user": map[string]string{"username": "jake", "email": "jake@example.test", "password": "jake-password"}})
	c.keep(answer)
	if status != http.StatusCreated || !strings.HasPrefix(c.token, "cloakroom-vault.") {
		t.Fatalf("register through the guide's gateway: %d, token %q\n%s", status, c.token, output.String())
	}
	status, answer = c.do("POST", "/api/users/login", map[string]any{"user": map[string]string{"email": "jake@example.test", "password": "jake-password"}})
	c.keep(answer)
	if status != http.StatusOK {
		t.Fatalf("login: %d", status)
	}
	if status, _ = c.do("POST", "/api/articles", map[string]any{"article": map[string]any{"title": "Behind cloakroom", "body": "As the guide says."}}); status != http.StatusCreated {
		t.Fatalf("create article with the placeholder only: %d", status)
	}
	if status, answer = c.do("GET", "/api/user", nil); status != http.StatusOK || answer["user"].(map[string]any)["username"] != "jake" {
		t.Fatalf("current user: %d %v", status, answer)
	}
	if c.jwts != 0 {
		t.Errorf("%d answers carried a JWT to the client", c.jwts)
	}
	if out := output.String(); strings.Contains(out, "eyJ") {
		t.Errorf("the gateway's or the app's output holds a JWT:\n%s", out)
	}
}
