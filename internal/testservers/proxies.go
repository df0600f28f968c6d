package testservers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ProxyServer is a throwaway nginx or Caddy owned by one test.
type ProxyServer struct {
	// Addr is where it listens: 127.0.0.1 and a free port.
	Addr string
	// Dir holds its configuration, logs and state.
	Dir string
}

// StartNginx starts nginx from the system binary (Debian's package has the
// auth_request module built in) on a free loopback port, in the
// foreground and in one process (master_process off), so it runs as the
// test's user and dies with the test binary. site returns what goes
// inside the http block for the listen address it is given (such as
// "127.0.0.1:41234"). It is stopped when t ends. Without nginx the test
// is skipped, or fails when $CLOAKROOM_REQUIRE_SERVICES is 1.
func StartNginx(t testing.TB, site func(listen string) string) *ProxyServer {
	t.Helper()
	return StartNginxWithModules(t, nil, site)
}

// NginxModuleDir is where Debian's nginx module packages put their
// dynamic modules.
const NginxModuleDir = "/usr/lib/nginx/modules"

// StartNginxWithModules is StartNginx with the dynamic modules named
// (file names in NginxModuleDir, such as "ngx_http_set_misc_module.so")
// loaded first. A missing module is treated as a missing nginx.
func StartNginxWithModules(t testing.TB, modules []string, site func(listen string) string) *ProxyServer {
	t.Helper()
	bin, err := findBinary("nginx", "/usr/sbin/nginx")
	if err != nil {
		proxyUnavailable(t, "nginx", err)
	}
	var load strings.Builder
	for _, m := range modules {
		path := filepath.Join(NginxModuleDir, m)
		if _, err := os.Stat(path); err != nil {
			proxyUnavailable(t, "nginx module "+m, fmt.Errorf("%w (scripts/test-deps.sh installs it)", err))
		}
		fmt.Fprintf(&load, "load_module %s;\n", path)
	}
	srv, err := startProxy(t, func(dir, listen string) (*exec.Cmd, error) {
		for _, sub := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return nil, err
			}
		}
		conf := fmt.Sprintf(`%[3]sdaemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, site(listen), load.String())
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		return exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path), nil
	})
	if err != nil {
		// The binary is there: a start that fails is the test's fault.
		t.Fatalf("starting nginx: %v", err)
	}
	return srv
}

// StartCaddy starts Caddy from the system binary on a free loopback port,
// with its admin endpoint off and its state in the test's folder. It is
// given a Caddyfile: global options that keep it to plain HTTP and off
// the admin port, then what caddyfile returns for the listen address
// (such as "127.0.0.1:41234"). It is stopped when t ends. Without caddy
// the test is skipped, or fails when $CLOAKROOM_REQUIRE_SERVICES is 1.
func StartCaddy(t testing.TB, caddyfile func(listen string) string) *ProxyServer {
	t.Helper()
	bin, err := findBinary("caddy", "/usr/bin/caddy")
	if err != nil {
		proxyUnavailable(t, "caddy", err)
	}
	srv, err := startProxy(t, func(dir, listen string) (*exec.Cmd, error) {
		conf := "{\n\tadmin off\n\tauto_https off\n}\n\n" + caddyfile(listen)
		path := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", path)
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		return cmd, nil
	})
	if err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	return srv
}

// startProxy runs the command build returns for a free port until the
// port accepts connections. A port found free can be taken before the
// proxy binds it: it tries three.
func startProxy(t testing.TB, build func(dir, listen string) (*exec.Cmd, error)) (*ProxyServer, error) {
	t.Helper()
	// Not t.TempDir: the folder outlives nothing, but its path is short
	// and the proxy writes its state there.
	dir, err := os.MkdirTemp("", "cloakroom-proxy-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd, err := build(dir, listen)
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		kill := func() { cmd.Process.Kill(); <-exited }
		if lastErr = awaitListening(listen, exited, 15*time.Second); lastErr == nil {
			t.Cleanup(kill)
			return &ProxyServer{Addr: listen, Dir: dir}, nil
		}
		kill()
		logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		lastErr = fmt.Errorf("%v; output: %s %s", lastErr, lastLines(out.Bytes()), lastLines(logs))
	}
	return nil, lastErr
}

// awaitListening polls addr until it accepts a connection, the process
// exits or the timeout passes.
func awaitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("the proxy exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens at %s after %v: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findBinary looks name up in PATH, then at the fallback (sbin is often
// missing from a non-login PATH).
func findBinary(name, fallback string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	if info, err := os.Stat(fallback); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
		return fallback, nil
	}
	return "", fmt.Errorf("%s not found in PATH or at %s (scripts/test-deps.sh installs it)", name, fallback)
}

func proxyUnavailable(t testing.TB, name string, err error) {
	t.Helper()
	msg := "no " + name + " for tests: " + err.Error()
	if os.Getenv("CLOAKROOM_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
