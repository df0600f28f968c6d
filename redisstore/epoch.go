package redisstore

import (
	"context"
	"fmt"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

// The global epoch is one counter (Store.epochKey) in a slot of its own,
// so no session script can read it: each Store compares sessions with the
// epoch it trusts (currentEpoch), and passes it to the scripts, which treat
// what is below it as dead.
//
// What a Store trusts while it holds its cache lease is its knownEpoch,
// which misses no bump that has returned, for the reasons the lease
// misses no session end (see lease and ack.go): BumpEpoch announces the new
// epoch ("e") in the script that increments it and waits for the
// acknowledgements, and each heartbeat round also goes through the node
// that holds the epoch, carrying the epoch that node has, so a round that
// renews the lease brings every bump that node ran before it, announced or
// not (a new or resubscribed Store, a lost message). Without the lease, a
// Store reads the epoch from Redis.

// Epoch implements [cloakroom.Store]: the epoch this Store trusts, which
// reflects every BumpEpoch that has returned, on any node.
func (s *Store) Epoch(ctx context.Context) (uint64, error) {
	epoch, err := s.currentEpoch(ctx)
	if err != nil {
		return 0, fmt.Errorf("redisstore: epoch: %w", err)
	}
	return epoch, nil
}

// BumpEpoch implements [cloakroom.Store]. It increments the epoch and
// announces it in one script, and returns once every Store heard from
// within the lease has acknowledged it, or the lease has passed, as the
// other revocations do. The sessions it ends stay in Redis, unreachable,
// until their TTLs remove them.
func (s *Store) BumpEpoch(ctx context.Context) (uint64, error) {
	epoch, err := s.revoke(ctx, bumpEpochScript, []string{s.epochKey()}, []string{s.endsChannel()}).AsUint64()
	if err != nil {
		return 0, fmt.Errorf("redisstore: bump epoch: %w", err)
	}
	s.raiseEpoch(epoch)
	s.awaitRevocation(epochMessage(epoch))
	return epoch, nil
}

// currentEpoch is the global epoch this Store trusts now: the one it knows
// while it holds its cache lease, else the one Redis has.
func (s *Store) currentEpoch(ctx context.Context) (uint64, error) {
	if s.cacheTTL > 0 && s.lease.valid(s.recent.now()) {
		return s.knownEpoch.Load(), nil
	}
	return s.epochOf(s.client.Do(ctx, s.client.B().Get().Key(s.epochKey()).Build()))
}

// checkEpoch fails with ErrNotFound when epoch, a session's or a record's,
// is below the one this Store trusts, which it returns.
func (s *Store) checkEpoch(ctx context.Context, epoch uint64) (uint64, error) {
	current, err := s.currentEpoch(ctx)
	if err != nil {
		return 0, err
	}
	if epoch < current {
		return current, fmt.Errorf("epoch %d is below the current epoch %d: %w", epoch, current, cloakroom.ErrNotFound)
	}
	return current, nil
}

// epochOf reads the epoch from the reply to GET, which is nil before the
// first bump, and returns the highest epoch known.
func (s *Store) epochOf(res rueidis.RedisResult) (uint64, error) {
	epoch, err := res.AsUint64()
	if rueidis.IsRedisNil(err) {
		epoch, err = 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("epoch: %w", err)
	}
	return s.raiseEpoch(epoch), nil
}

// raiseEpoch raises knownEpoch to epoch, if it is higher, and returns the
// result.
func (s *Store) raiseEpoch(epoch uint64) uint64 {
	for {
		cur := s.knownEpoch.Load()
		if epoch <= cur {
			return cur
		}
		if s.knownEpoch.CompareAndSwap(cur, epoch) {
			return epoch
		}
	}
}
