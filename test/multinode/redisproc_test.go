package multinode

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// redisProcess is a redis-server this package started itself, to bring a
// stopped [testservers.RedisServer] back on the same port (testservers has
// no restart).
type redisProcess struct {
	stop func()
}

// startRedisOn starts redis-server on addr, a loopback host:port, without
// persistence, like testservers.StartRedis does, and waits until it
// answers PING.
func startRedisOn(t *testing.T, addr string) (*redisProcess, error) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--port", port,
		"--bind", host,
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
		"--daemonize", "no",
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stopped := false
	p := &redisProcess{stop: func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			<-exited
		}
	}}
	t.Cleanup(p.stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := redisPing(addr); err == nil {
			return p, nil
		} else if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer: %v; output: %s", addr, err, strings.TrimSpace(out.String()))
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("redis-server on %s exited; output: %s", addr, strings.TrimSpace(out.String()))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// redisPing sends an inline PING and wants +PONG.
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
