package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/internal/doctest"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
)

// The quick start's listeners: other ports than the demo's (8080, 9090),
// so it runs while the demo does.
const (
	quickStartPublic = "127.0.0.1:8081"
	quickStartAdmin  = "127.0.0.1:9091"
)

// TestGatewayQuickStartAsWritten follows the README's "Gateway quick start"
// literally, as a newcomer would after cloning: its two sh blocks, each a
// bash script run from the clone's root with a HOME of its own. The first
// builds bin/cloakroom, writes an admin token and runs `cloakroom serve`,
// which creates the store; the second, run once the gateway answers, adds
// a user. Then the printed password logs in, the session shows the user,
// the sample page is served, the admin API answers with the token, every
// file the commands wrote is in the data folder under HOME, owner-only,
// none in the clone, and the sample page works in Chromium.
func TestGatewayQuickStartAsWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and runs the README's commands")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "TestGatewayQuickStartAsWritten") {
		t.Error("the README does not name this test, which keeps its quick start true")
	}
	blocks := doctest.ShellBlocks(doctest.Section(string(readme), "## Gateway quick start"))
	if len(blocks) != 2 {
		t.Fatalf("the quick start has %d sh blocks, want 2 (start the gateway; add a user in a second terminal)", len(blocks))
	}
	gatewayScript, userScript := blocks[0], blocks[1]
	for _, want := range []string{"make build", "bin/cloakroom serve", "--static examples/static", "--listen " + quickStartPublic, "--admin-listen " + quickStartAdmin, "--data-dir"} {
		if !strings.Contains(gatewayScript, want) {
			t.Fatalf("the quick start's first sh block has no %q:\n%s", want, gatewayScript)
		}
	}
	if !strings.Contains(userScript, "bin/cloakroom user add alice") {
		t.Fatalf("the quick start's second sh block adds no user alice:\n%s", userScript)
	}
	lockQuickStartPorts(t)
	for _, addr := range []string{quickStartPublic, quickStartAdmin} {
		doctest.WaitFree(t, addr, "the quick start listens there; is a gateway from it still running?")
	}
	before := rootEntries(t, root)

	home := t.TempDir()
	env := doctest.NewcomerEnv(t, home)
	cmd := exec.Command("bash", "-e", "-c", gatewayScript)
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
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // the gateway the script started
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// The script ends in the gateway, which runs until it is stopped; the
	// build comes first, so wait for readiness or the script's end.
	admin := "http://" + quickStartAdmin
	for !answers(admin + "/readyz") {
		select {
		case err := <-exited:
			t.Fatalf("the quick start's first block stopped (%v):\n%s", err, output.String())
		case <-time.After(200 * time.Millisecond):
		}
	}

	// The second terminal.
	add := exec.Command("bash", "-e", "-c", userScript)
	add.Dir, add.Env = root, env
	added, err := add.CombinedOutput()
	if err != nil {
		t.Fatalf("the quick start's second block: %v\n%s", err, added)
	}
	m := regexp.MustCompile(`password for alice [^\n]*:\n\s+(\S+)`).FindSubmatch(added)
	if m == nil {
		t.Fatalf("`user add alice` printed no password:\n%s", added)
	}
	password := string(m[1])
	base := "http://" + quickStartPublic
	body, _ := json.Marshal(map[string]string{"username": "alice", "password": password})
	res, err := http.Post(base+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	var cookie string
	for _, c := range res.Cookies() {
		if c.Name == "__Host-Http-session" && c.Value != "" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if res.StatusCode != http.StatusOK || cookie == "" {
		t.Fatalf("login as alice with the printed password: %d, session cookie %t\n%s", res.StatusCode, cookie != "", output.String())
	}

	status, page := fetch(t, "GET", base+"/auth/session", cookie)
	var session struct {
		User  string   `json:"user"`
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal([]byte(page), &session); status != http.StatusOK || err != nil || session.User != "alice" || !slices.Contains(session.Roles, "admin") {
		t.Fatalf("GET /auth/session after login: %d %s, want alice with role admin", status, page)
	}
	if status, page = fetch(t, "GET", base+"/", cookie); status != http.StatusOK || !strings.Contains(page, "Signed in through cloakroom") {
		t.Fatalf("GET / with the session: %d, want examples/static/index.html\n%s", status, page)
	}
	// Everything generated sits in the data folder, the secrets owner-only;
	// the clone gains at most bin/, which .gitignore covers.
	data := filepath.Join(home, "cloakroom-quickstart")
	if info, err := os.Stat(data); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data folder %s: %v, want mode 700", data, err)
	}
	for name, mode := range map[string]os.FileMode{"admin-token": 0o600, "cloakroom-jwt-ed25519.pem": 0o600, "cloakroom.db": 0} {
		info, err := os.Stat(filepath.Join(data, name))
		switch {
		case err != nil:
			t.Errorf("%s not in the data folder: %v", name, err)
		case mode != 0 && info.Mode().Perm() != mode:
			t.Errorf("%s: mode %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	// What the commands could write, as the newcomer found them in
	// the clone: the binary, the store, the key, the token. (Other new
	// names are a developer's edits made meanwhile, not the quick start's.)
	generated := regexp.MustCompile(`^(cloakroom|admin-token|.*\.pem|.*\.db(-wal|-shm|-journal)?|.*\.keys)$`)
	for _, name := range rootEntries(t, root) {
		if !slices.Contains(before, name) && name != "bin" && generated.MatchString(name) {
			t.Errorf("the quick start left %s in the clone's root", name)
		}
	}

	token, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	status, page = fetch(t, "GET", admin+"/admin/users/alice/sessions", "Bearer "+strings.TrimSpace(string(token)))
	if status != http.StatusOK || strings.Count(page, `"handle"`) != 1 {
		t.Fatalf("the admin API with the quick start's token: %d %s, want alice's one session", status, page)
	}

	signInWithSamplePage(t, "http://localhost:8081/", password) // localhost, as the README says
}

// signInWithSamplePage opens the quick start's sample page in Chromium:
// it sends the browser to the login page, shows alice once she has logged
// in, says the API has yet to be started, and logs out.
func signInWithSamplePage(t *testing.T, url, password string) {
	ctx := browsertest.New(t)
	var mu sync.Mutex
	var exceptions []string
	chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			exceptions = append(exceptions, e.ExceptionDetails.Text)
			mu.Unlock()
		}
	})
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	// until polls expr through the navigations it causes; the browser's
	// context bounds the wait.
	until := func(expr string) {
		t.Helper()
		for {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
			if err == nil && v {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("waiting for %s: %v", expr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	do := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatal(err)
		}
	}

	do(chromedp.Navigate(url))
	until(`location.pathname === "/auth/login" && !!document.getElementById("username")`)
	do(chromedp.SetValue(chromedp.ID("username"), "alice"),
		chromedp.SetValue(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")))
	until(`location.pathname === "/" && document.getElementById("who").textContent.startsWith("Signed in as alice")`)
	until(`document.getElementById("api").textContent.includes("502")`)
	if c := eval(`document.cookie`); c != "" {
		t.Errorf("the sample page's script sees cookies: %q", c)
	}
	until(`!document.getElementById("logout").disabled`)
	do(chromedp.Click(chromedp.ID("logout")))
	until(`location.pathname === "/auth/login"`)
	do(chromedp.Navigate(url))
	until(`location.pathname === "/auth/login"`) // the session ended on the server
	mu.Lock()
	defer mu.Unlock()
	if len(exceptions) > 0 {
		t.Errorf("the sample page threw: %q", exceptions)
	}
}

// rootEntries lists the names in the clone's root folder.
func rootEntries(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// lockQuickStartPorts makes runs of this test in other processes (other
// packages' test binaries, other clones on the machine) wait for this one:
// they would all listen on the quick start's fixed ports.
func lockQuickStartPorts(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "cloakroom-quickstart-ports.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		// Another user's lock file: doctest.WaitFree still waits for the ports.
		t.Logf("running without the ports' lock: %v", err)
		return
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock, after the gateway has stopped
}

// answers reports whether a GET of url gets 200.
func answers(url string) bool {
	res, err := http.Get(url)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// fetch sends a request with a session cookie ("name=value") or an
// Authorization value ("Bearer ...") and returns the status and body.
func fetch(t *testing.T, method, url, credential string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if strings.HasPrefix(credential, "Bearer ") {
		req.Header.Set("Authorization", credential)
	} else if credential != "" {
		req.Header.Set("Cookie", credential)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(body)
}
