package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/internal/syncbuf"
)

// syncBuffer collects output from concurrent goroutines.
type syncBuffer = syncbuf.Buffer

type result struct {
	code           int
	stdout, stderr string
}

// run runs the command in-process to completion.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	code := Run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// mustRun runs the command and fails the test unless it exits 0.
func mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := run(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("cloakroom %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// background is a long-running command (serve, demo).
type background struct {
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

func start(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { b.done <- Run(ctx, args, strings.NewReader(""), b.stdout, b.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			t.Error("command did not stop")
		}
	})
	return b
}

// stop cancels the command and returns its exit code.
func (b *background) stop(t *testing.T) int {
	t.Helper()
	b.cancel()
	select {
	case code := <-b.done:
		b.done <- code // for the cleanup
		return code
	case <-time.After(15 * time.Second):
		t.Fatalf("command did not stop within 15 s\nstderr: %s", b.stderr)
		return -1
	}
}

// waitFor polls until check returns true, failing after a few seconds or
// when the command exits early.
func (b *background) waitFor(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !check() {
		select {
		case code := <-b.done:
			b.done <- code
			t.Fatalf("command exited (%d) before %s\nstdout: %s\nstderr: %s", code, what, b.stdout, b.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\nstdout: %s\nstderr: %s", what, b.stdout, b.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listening returns the addresses from serve's JSON "listening" log line.
func (b *background) listening(t *testing.T) (public, admin string) {
	t.Helper()
	b.waitFor(t, "the listening log line", func() bool {
		for line := range strings.SplitSeq(b.stderr.String(), "\n") {
			var entry struct{ Msg, Public, Admin string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				public, admin = entry.Public, entry.Admin
				return true
			}
		}
		return false
	})
	return public, admin
}

// client is an HTTP client with its own connection pool, closed at the end
// of the test so that no idle connection outlives it.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// login posts a JSON login and returns the session cookie ("name=value")
// and the CSRF token.
func login(t *testing.T, c *http.Client, base, user, password string) (cookie, csrf string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	res, err := c.Post(base+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login as %s: %d %s", user, res.StatusCode, data)
	}
	for _, ck := range res.Cookies() {
		if ck.Name == "__Host-Http-session" && ck.Value != "" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		t.Fatalf("login as %s set no session cookie", user)
	}
	var out struct {
		CSRFToken string `json:"csrf_token"`
	}
	json.Unmarshal(data, &out)
	return cookie, out.CSRFToken
}

// get sends a GET with the cookie and returns the status and body.
func get(t *testing.T, c *http.Client, url, cookie string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

// writeFile writes a file with the given mode and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return path
}

// clearEnv unsets every CLOAKROOM_* variable for the test.
func clearEnv(t *testing.T) {
	for _, s := range settings {
		if _, ok := os.LookupEnv(s.env()); ok {
			t.Setenv(s.env(), "")
			os.Unsetenv(s.env())
		}
	}
}
