package pgstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cloakroom/cloakroom"
)

// Listener timing. The ping bounds how long a silently dead connection
// (no FIN, no RST) goes unnoticed while the cache keeps serving.
const (
	listenerPingInterval = 5 * time.Second
	listenerPingTimeout  = 5 * time.Second
	listenerConnectLimit = 10 * time.Second
	reconnectMinDelay    = 100 * time.Millisecond
	reconnectMaxDelay    = 5 * time.Second
)

// cache holds Find results of one Store. It only serves while enabled,
// which is while its listener is known to be receiving invalidations.
type cache struct {
	mu      sync.RWMutex
	enabled bool
	entries map[cloakroom.Key]cloakroom.Record
	max     int

	// Invalidation counters. A Find reserves their values before querying
	// and may fill only if they are unchanged: the row it read might
	// predate an invalidation that arrived meanwhile. epoch covers flushes
	// and user-wide invalidations, stripes single keys, striped so that
	// writes to other sessions rarely spoil a fill.
	epoch   uint64
	stripes [256]uint64
}

type fillToken struct {
	valid         bool
	epoch, stripe uint64
}

func newCache(max int) *cache {
	return &cache{entries: make(map[cloakroom.Key]cloakroom.Record), max: max}
}

// get returns the cached live record for key.
func (c *cache) get(key cloakroom.Key, now time.Time) (cloakroom.Record, bool) {
	c.mu.RLock()
	rec, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || rec.Expired(now) {
		return cloakroom.Record{}, false
	}
	return rec, true
}

func (c *cache) reserve(key cloakroom.Key) fillToken {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return fillToken{valid: c.enabled, epoch: c.epoch, stripe: c.stripes[key[0]]}
}

// fill caches rec unless the cache was disabled or rec's key invalidated
// since tok was reserved.
func (c *cache) fill(tok fillToken, rec cloakroom.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !tok.valid || !c.enabled || c.epoch != tok.epoch || c.stripes[rec.Key[0]] != tok.stripe {
		return
	}
	if _, present := c.entries[rec.Key]; !present && len(c.entries) >= c.max {
		// Map iteration order is unspecified enough to serve as random
		// eviction, which needs no bookkeeping on the hit path.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[rec.Key] = rec
}

func (c *cache) invalidateKey(key cloakroom.Key) {
	c.mu.Lock()
	delete(c.entries, key)
	c.stripes[key[0]]++
	c.mu.Unlock()
}

// invalidateUser drops the user's sessions. Bumps are rare, so a scan is
// cheaper overall than a per-user index kept on every fill.
func (c *cache) invalidateUser(userID string) {
	c.mu.Lock()
	for k, rec := range c.entries {
		if rec.UserID == userID {
			delete(c.entries, k)
		}
	}
	c.epoch++
	c.mu.Unlock()
}

// setEnabled flushes the cache and turns it on or off. Either way the
// flush is needed: when turning off, entries can no longer be trusted;
// when turning on, invalidations sent while off were never seen.
func (c *cache) setEnabled(on bool) {
	c.mu.Lock()
	c.enabled = on
	clear(c.entries)
	c.epoch++
	c.mu.Unlock()
}

func (c *cache) isEnabled() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.enabled
}

// invalidate applies one notification payload. Anything it does not
// understand flushes everything, the safe reading.
func (c *cache) invalidate(payload string) {
	if user, ok := strings.CutPrefix(payload, "u:"); ok {
		c.invalidateUser(user)
		return
	}
	var key cloakroom.Key
	if len(payload) == hex.EncodedLen(len(key)) {
		if _, err := hex.Decode(key[:], []byte(payload)); err == nil {
			c.invalidateKey(key)
			return
		}
	}
	c.mu.Lock()
	clear(c.entries)
	c.epoch++
	c.mu.Unlock()
}

// connectListener opens the dedicated listening connection, outside the
// pool so it never starves it, and enables the cache once LISTEN is in
// effect, so no invalidation sent afterwards can be missed.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, listenerConnectLimit)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect invalidation listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("pgstore: listen: %w", err)
	}
	s.listenerPID.Store(conn.PgConn().PID())
	s.cache.setEnabled(true)
	return conn, nil
}

// listen applies invalidations from conn until ctx ends, reconnecting
// with backoff whenever the connection fails; the cache stays disabled
// from the failure until the new connection listens.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	defer s.running.Done()
	delay := reconnectMinDelay
	for {
		if conn != nil {
			err := s.receive(ctx, conn)
			s.cache.setEnabled(false)
			s.listenerPID.Store(0)
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			s.log.WarnContext(ctx, "pgstore: invalidation listener lost; cache disabled until it reconnects", "err", err)
			delay = reconnectMinDelay
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		var err error
		conn, err = s.connectListener(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.WarnContext(ctx, "pgstore: invalidation listener cannot reconnect", "err", err, "retry_in", delay)
			delay = min(2*delay, reconnectMaxDelay)
			continue
		}
		s.log.InfoContext(ctx, "pgstore: invalidation listener reconnected; cache enabled")
	}
}

// receive applies notifications until the connection fails or ctx ends.
func (s *Store) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenerPingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		idle := waitCtx.Err() != nil
		cancel()
		if n != nil {
			s.cache.invalidate(n.Payload)
		}
		switch {
		case err == nil:
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !idle:
			return err
		}
		pingCtx, cancel := context.WithTimeout(ctx, listenerPingTimeout)
		err = conn.Ping(pingCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
