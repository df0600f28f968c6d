package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// DefaultReplicaTimeout is Config.ReplicaTimeout's default.
const DefaultReplicaTimeout = time.Second

// script is a Lua script that can also run on a dedicated connection,
// where a WAIT after it covers exactly its writes.
type script struct {
	*rueidis.Lua
	src, sha string
}

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{Lua: rueidis.NewLuaScript(src), src: src, sha: hex.EncodeToString(sum[:])}
}

func (sc *script) execOn(ctx context.Context, c rueidis.DedicatedClient, keys, args []string) rueidis.RedisResult {
	res := c.Do(ctx, c.B().Evalsha().Sha1(sc.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	if re, ok := rueidis.IsRedisErr(res.Error()); ok && re.IsNoScript() {
		res = c.Do(ctx, c.B().Eval().Script(sc.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	}
	return res
}

// revoke runs a revoking script. With Config.ReplicaAcks set it runs it on
// a dedicated connection to the keys' master and then waits (WAIT) until
// that many replicas have its writes, so that a failover cannot promote a
// replica that never saw the revocation; when they do not acknowledge it
// in time, the revocation fails: it happened on the master, but may be
// lost with it.
func (s *Store) revoke(ctx context.Context, sc *script, keys, args []string) rueidis.RedisResult {
	if s.replicaAcks <= 0 {
		return sc.Exec(ctx, s.client, keys, args)
	}
	var res rueidis.RedisResult
	err := s.client.Dedicated(func(c rueidis.DedicatedClient) error {
		res = sc.execOn(ctx, c, keys, args)
		if res.Error() != nil {
			return nil
		}
		n, err := c.Do(ctx, c.B().Wait().Numreplicas(int64(s.replicaAcks)).Timeout(s.replicaTimeout.Milliseconds()).Build()).AsInt64()
		if err == nil && n < int64(s.replicaAcks) {
			err = fmt.Errorf("%d of %d replicas acknowledged within %v", n, s.replicaAcks, s.replicaTimeout)
		}
		if err != nil {
			res = rueidis.NewErrorResult(fmt.Errorf("revoked on the master, but not known to be replicated: %w", err))
		}
		return nil
	})
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	return res
}
