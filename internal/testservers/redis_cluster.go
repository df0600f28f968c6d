package testservers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// redisClusterEnv names a Redis Cluster for the tests: "1" (or "start")
// has the helpers start one, anything else is a comma-separated list of
// seed addresses of a cluster that accepts writes without a password.
// When it is set, [Redis] answers a seed of that cluster instead of a
// standalone server, so every test that takes its Redis from [Redis] runs
// against the cluster (rueidis finds the other nodes itself).
const redisClusterEnv = "CLOAKROOM_TEST_REDIS_CLUSTER"

// ClusterNodeTimeout is cluster-node-timeout of the clusters the helpers
// start: how long a master may be unreachable before its replica is
// promoted. Short, so failover tests end quickly; long enough that a
// loaded machine does not fail nodes over by itself.
const ClusterNodeTimeout = 2 * time.Second

// RedisClusterWanted reports whether $CLOAKROOM_TEST_REDIS_CLUSTER asks
// for the tests' Redis to be a cluster.
func RedisClusterWanted() bool { return os.Getenv(redisClusterEnv) != "" }

// RedisCluster returns the seed addresses of a six-node Redis Cluster
// (three masters, each with a replica) for tests: the one named by
// $CLOAKROOM_TEST_REDIS_CLUSTER, or one started from the system
// redis-server and redis-cli on loopback ports. A started cluster is
// shared by all tests of the test binary and killed with it; tests must
// never flush it (use [RedisPrefix]). If no cluster can be had, the test
// is skipped, or fails when $CLOAKROOM_REQUIRE_SERVICES is 1.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv(redisClusterEnv); v != "" && v != "1" && v != "start" {
		var addrs []string
		for _, a := range strings.Split(v, ",") {
			addr, err := redisAddrFromEnv(strings.TrimSpace(a))
			if err == nil {
				err = redisPing(addr, 2*time.Second)
			}
			if err != nil {
				t.Fatalf("%s=%q: %s: %v", redisClusterEnv, v, a, err)
			}
			addrs = append(addrs, addr)
		}
		return addrs
	}
	shared.once.Do(func() {
		// The processes are started from a thread that lives as long as
		// the test binary, so that Pdeathsig kills them when it exits.
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			dir, err := os.MkdirTemp("", "cloakroom-redis-cluster-")
			if err == nil {
				shared.cluster, err = startCluster(dir)
			}
			shared.err = err
			close(done)
			select {} // keep the thread
		}()
		<-done
	})
	if shared.err != nil {
		redisUnavailable(t, []string{"Redis Cluster: " + shared.err.Error()})
	}
	return shared.cluster.Addrs()
}

var shared struct {
	once    sync.Once
	cluster *RedisClusterServer
	err     error
}

// RedisClusterServer is a six-node Redis Cluster started by the helpers.
type RedisClusterServer struct {
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	addr string
	kill func()
}

// StartRedisCluster starts a six-node Redis Cluster owned by one test (for
// instance to stop a master under load), stopped when t ends. If it cannot
// be started the test is skipped, or fails when
// $CLOAKROOM_REQUIRE_SERVICES is 1.
func StartRedisCluster(t testing.TB) *RedisClusterServer {
	t.Helper()
	c, err := startCluster(t.TempDir())
	if err != nil {
		redisUnavailable(t, []string{"Redis Cluster: " + err.Error()})
	}
	t.Cleanup(c.Stop)
	return c
}

// Addrs returns the addresses of the nodes still running.
func (c *RedisClusterServer) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var addrs []string
	for _, n := range c.nodes {
		if n.kill != nil {
			addrs = append(addrs, n.addr)
		}
	}
	return addrs
}

// StopNode kills the node at addr, as a crash would.
func (c *RedisClusterServer) StopNode(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.addr == addr && n.kill != nil {
			n.kill()
			n.kill = nil
		}
	}
}

// Stop kills every node.
func (c *RedisClusterServer) Stop() {
	for _, a := range c.Addrs() {
		c.StopNode(a)
	}
}

// Masters returns the addresses of the nodes that are masters, as the
// node at seed sees them.
func (c *RedisClusterServer) Masters(ctx context.Context, seed string) ([]string, error) {
	out, err := redisCommand(ctx, seed, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	var masters []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 8 && strings.Contains(f[2], "master") && !strings.Contains(f[2], "fail") { // a master serving slots
			masters = append(masters, strings.SplitN(f[1], "@", 2)[0])
		}
	}
	return masters, nil
}

func startCluster(dir string) (c *RedisClusterServer, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, err
	}
	c = &RedisClusterServer{}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for i := 0; i < 6; i++ {
		n, err := startClusterNode(bin, dir)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, lastLines(out))
	}
	if err := c.awaitHealthy(30 * time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// awaitHealthy waits until every node reports the cluster ok, knows all
// six nodes, three of them masters, and every replica has synced.
func (c *RedisClusterServer) awaitHealthy(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		last = nil
		for _, addr := range c.Addrs() {
			info, err := redisCommand(ctx, addr, "CLUSTER", "INFO")
			if err == nil && (!strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6") || !strings.Contains(info, "cluster_size:3")) {
				err = fmt.Errorf("%s not ready: %s", addr, strings.Join(strings.Fields(info)[:min(3, len(strings.Fields(info)))], " "))
			}
			if err == nil {
				var nodes string
				if nodes, err = redisCommand(ctx, addr, "CLUSTER", "NODES"); err == nil && strings.Count(nodes, "slave") != 3 {
					err = fmt.Errorf("%s does not see three replicas yet", addr)
				}
			}
			if err == nil {
				// A replica that has not synced with its master cannot
				// take over from it.
				var repl string
				if repl, err = redisCommand(ctx, addr, "INFO", "replication"); err == nil && strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
					err = fmt.Errorf("replica %s has not synced yet", addr)
				}
			}
			if err != nil {
				last = err
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy after %v: %v", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func startClusterNode(bin, dir string) (*clusterNode, error) {
	addr, kill, err := startRedisProcess(bin, dir, func(port int) ([]string, error) {
		busPort, err := freePort()
		if err != nil {
			return nil, err
		}
		return []string{
			"--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
			"--repl-diskless-sync-delay", "0",
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return &clusterNode{addr: addr, kill: kill}, nil
}

// redisCommand runs one command on the node at addr alone (no cluster
// routing) and returns its answer as text.
func redisCommand(ctx context.Context, addr string, args ...string) (string, error) {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		DisableRetry:      true,
		ForceSingleClient: true,
	})
	if err != nil {
		return "", err
	}
	defer client.Close()
	return client.Do(ctx, client.B().Arbitrary(args...).Build()).ToString()
}
