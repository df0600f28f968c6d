package testservers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// redisLocalAddr is where a developer's or CI's Redis usually listens.
const redisLocalAddr = "127.0.0.1:6379"

// Redis returns the address (host:port) of a Redis server for tests, trying
// in turn:
//
//  0. with $CLOAKROOM_TEST_REDIS_CLUSTER set, a seed node of the cluster
//     [RedisCluster] returns;
//  1. $CLOAKROOM_TEST_REDIS, an address or a redis:// URL (only its host
//     and port are used; it must answer PING);
//  2. a server at 127.0.0.1:6379 that answers PING without a password;
//  3. a throwaway server started from the system redis-server (see
//     [StartRedis]), stopped when t's test ends.
//
// If none works, the test is skipped with the reasons, or fails when
// $CLOAKROOM_REQUIRE_SERVICES is 1. Tests share the server and must never
// flush it: use [RedisPrefix] or [RedisFresh] for keys of their own.
func Redis(t testing.TB) string {
	t.Helper()
	if RedisClusterWanted() {
		return RedisCluster(t)[0]
	}
	if v := os.Getenv("CLOAKROOM_TEST_REDIS"); v != "" {
		addr, err := redisAddrFromEnv(v)
		if err == nil {
			err = redisPing(addr, 2*time.Second)
		}
		if err != nil {
			// An explicit setting that does not work is a broken setup, not
			// a missing service.
			t.Fatalf("CLOAKROOM_TEST_REDIS=%q: %v", v, err)
		}
		return addr
	}
	var reasons []string
	err := redisPing(redisLocalAddr, 500*time.Millisecond)
	if err == nil {
		return redisLocalAddr
	}
	reasons = append(reasons, fmt.Sprintf("%s: %v", redisLocalAddr, err))
	srv, err := redisStart(t)
	if err != nil {
		reasons = append(reasons, "throwaway server: "+err.Error())
		redisUnavailable(t, reasons)
	}
	return srv.Addr
}

// RedisPrefix returns a key prefix no other test or run uses, such as
// "cloakroom-test:1f2e3d4c5b6a:", and deletes every key under it on the
// server at addr when t ends.
func RedisPrefix(t testing.TB, addr string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "cloakroom-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		if err := redisDeletePrefix(addr, prefix); err != nil {
			t.Logf("cleaning up Redis keys %s*: %v", prefix, err)
		}
	})
	return prefix
}

// RedisFresh returns a Redis address, as [Redis] does, and a fresh key
// prefix on it, as [RedisPrefix] does.
func RedisFresh(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr = Redis(t)
	return addr, RedisPrefix(t, addr)
}

// RedisServer is a throwaway Redis server owned by one test.
type RedisServer struct {
	Addr string // host:port on the loopback interface

	stopOnce sync.Once
	kill     func() // kills the process and waits until it has exited
}

// StartRedis starts a throwaway redis-server without persistence on a free
// loopback port, for tests that need a server of their own (for instance
// to stop it). It is stopped when t ends, or earlier by Stop. If no server
// can be started the test is skipped, or fails when
// $CLOAKROOM_REQUIRE_SERVICES is 1.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	srv, err := redisStart(t)
	if err != nil {
		redisUnavailable(t, []string{"throwaway server: " + err.Error()})
	}
	return srv
}

// Stop kills the server and waits for it to exit. It may be called more
// than once.
func (s *RedisServer) Stop() { s.stopOnce.Do(s.kill) }

func redisUnavailable(t testing.TB, reasons []string) {
	t.Helper()
	msg := "no Redis server for tests: " + strings.Join(reasons, "; ")
	if os.Getenv("CLOAKROOM_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg + " (set CLOAKROOM_TEST_REDIS, or CLOAKROOM_REQUIRE_SERVICES=1 to fail instead)")
}

// redisAddrFromEnv accepts "host:port", "host" or "redis://[user:pass@]host[:port][/db]".
func redisAddrFromEnv(v string) (string, error) {
	if !strings.Contains(v, "://") {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return net.JoinHostPort(v, "6379"), nil
		}
		return v, nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", err
	}
	if u.Scheme != "redis" {
		return "", fmt.Errorf("scheme %q: only redis:// is supported", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("no host in %q", v)
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// redisPing sends an inline PING and wants +PONG, so a server that demands
// a password counts as unusable.
func redisPing(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func redisStart(t testing.TB) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	addr, kill, err := startRedisProcess(bin, dir, nil)
	if err != nil {
		return nil, err
	}
	srv := &RedisServer{Addr: addr, kill: kill}
	t.Cleanup(srv.Stop)
	return srv, nil
}

// startRedisProcess starts redis-server without persistence on a free
// loopback port, in dir, with the arguments extra returns for that port,
// and waits until it answers. A port found free can be taken before the
// server binds it: it tries three. The server dies with the test binary.
func startRedisProcess(bin, dir string, extra func(port int) ([]string, error)) (addr string, kill func(), err error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return "", nil, err
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
		}
		if extra != nil {
			more, err := extra(port)
			if err != nil {
				return "", nil, err
			}
			args = append(args, more...)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return "", nil, err
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		kill = func() { cmd.Process.Kill(); <-exited }
		if lastErr = redisAwait(addr, exited, 5*time.Second); lastErr == nil {
			return addr, kill, nil
		}
		kill()
		lastErr = fmt.Errorf("%v; output: %s", lastErr, lastLines(out.Bytes()))
	}
	return "", nil, lastErr
}

// redisAwait polls addr with PING until it answers, the process exits or
// the timeout passes.
func redisAwait(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := redisPing(addr, 200*time.Millisecond)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisDeletePrefix removes every key starting with prefix, which holds no
// glob metacharacters, from the server at addr or, if it is a cluster
// node, from every node of its cluster.
func redisDeletePrefix(addr, prefix string) error {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{addr},
		DisableCache: true,
		DisableRetry: true,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, node := range client.Nodes() {
		var cursor uint64
		for {
			entry, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return err
			}
			// One UNLINK per key: in a cluster the keys live in many slots.
			unlinks := make(rueidis.Commands, 0, len(entry.Elements))
			for _, k := range entry.Elements {
				unlinks = append(unlinks, client.B().Unlink().Key(k).Build())
			}
			for _, res := range client.DoMulti(ctx, unlinks...) {
				if err := res.Error(); err != nil {
					return err
				}
			}
			if entry.Cursor == 0 {
				break
			}
			cursor = entry.Cursor
		}
	}
	return nil
}
