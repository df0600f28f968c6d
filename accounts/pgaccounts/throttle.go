package pgaccounts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/pgschema"
)

// Throttle is an [accounts.ThrottleStore] in the tables cloakroom_throttle
// and cloakroom_device_key of a PostgreSQL schema, shared by every gateway
// node on the database. Begin runs in one transaction holding an advisory
// lock per key (taken in a fixed order, so no deadlock), so concurrent
// attempts on several nodes are counted as if they came one after another.
// Rows expire Window after their last failure and are deleted a few at a
// time by later attempts.
type Throttle struct {
	pool                                      *pgxpool.Pool
	get, upsert, del, cleanup, keyIns, keyGet string
}

// NewThrottle creates the tables if needed in schema (DefaultSchema when
// "") and returns a store on them. The pool is
// not closed by the store.
func NewThrottle(ctx context.Context, pool *pgxpool.Pool, schema string) (*Throttle, error) {
	schema, q, err := checkArgs("NewThrottle", pool, schema)
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The lock every migration of this schema takes.
		if err := pgschema.Lock(ctx, tx, schema); err != nil {
			return err
		}
		for _, stmt := range []string{
			"CREATE SCHEMA IF NOT EXISTS " + q,
			`CREATE TABLE IF NOT EXISTS ` + q + `.cloakroom_throttle (
	kind       text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	failures   integer NOT NULL,
	last_ms    bigint NOT NULL,
	until_ms   bigint NOT NULL,
	expires_ms bigint NOT NULL,
	PRIMARY KEY (kind, key)
)`,
			`CREATE INDEX IF NOT EXISTS cloakroom_throttle_expires ON ` + q + `.cloakroom_throttle (expires_ms)`,
			`CREATE TABLE IF NOT EXISTS ` + q + `.cloakroom_device_key (
	id  integer PRIMARY KEY CHECK (id = 1),
	key text NOT NULL
)`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("accounts: create throttle tables in %s: %w", q, err)
	}
	t := q + ".cloakroom_throttle"
	return &Throttle{
		pool: pool,
		get:  `SELECT failures, last_ms, until_ms FROM ` + t + ` WHERE kind = $1 AND key = $2`,
		upsert: `INSERT INTO ` + t + ` (kind, key, failures, last_ms, until_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)
	ON CONFLICT (kind, key) DO UPDATE SET failures = EXCLUDED.failures, last_ms = EXCLUDED.last_ms,
	until_ms = EXCLUDED.until_ms, expires_ms = EXCLUDED.expires_ms`,
		del:     `DELETE FROM ` + t + ` WHERE kind = $1 AND key = $2`,
		cleanup: `DELETE FROM ` + t + ` WHERE ctid IN (SELECT ctid FROM ` + t + ` WHERE expires_ms < $1 LIMIT 20)`,
		keyIns:  `INSERT INTO ` + q + `.cloakroom_device_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`,
		keyGet:  `SELECT key FROM ` + q + `.cloakroom_device_key WHERE id = 1`,
	}, nil
}

type pgCounter struct {
	failures       int
	last, until    int64 // Unix ms
	exists, remove bool
}

// withKeys runs fn in a transaction holding the keys' advisory locks, with
// their counters read.
func (s *Throttle) withKeys(ctx context.Context, keys []accounts.ThrottleKey, fn func(tx pgx.Tx, counters []pgCounter) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		locks := make([]int64, len(keys))
		for i, k := range keys {
			h := fnv.New64a()
			h.Write([]byte("cloakroom/throttle\x00" + k.Kind + "\x00" + k.Key))
			locks[i] = int64(h.Sum64())
		}
		slices.Sort(locks)
		for _, l := range locks {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", l); err != nil {
				return err
			}
		}
		counters := make([]pgCounter, len(keys))
		for i, k := range keys {
			c := &counters[i]
			err := tx.QueryRow(ctx, s.get, k.Kind, k.Key).Scan(&c.failures, &c.last, &c.until)
			switch {
			case err == nil:
				c.exists = true
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
		}
		return fn(tx, counters)
	})
}

// Begin implements [accounts.ThrottleStore].
func (s *Throttle) Begin(ctx context.Context, now time.Time, keys []accounts.ThrottleKey) (time.Duration, error) {
	nowMS := now.UnixMilli()
	var wait int64
	err := s.withKeys(ctx, keys, func(tx pgx.Tx, counters []pgCounter) error {
		for _, c := range counters {
			wait = max(wait, c.until-nowMS)
		}
		if wait > 0 {
			return nil
		}
		for i, k := range keys {
			c := counters[i]
			if nowMS-c.last > k.Rule.Window.Milliseconds() {
				c.failures = 0
			}
			c.failures++
			var until int64
			if d := k.Rule.Delay(c.failures); d > 0 {
				until = nowMS + d.Milliseconds()
			}
			if _, err := tx.Exec(ctx, s.upsert, k.Kind, k.Key, c.failures, nowMS, until, nowMS+k.Rule.Window.Milliseconds()); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, s.cleanup, nowMS)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("accounts: PostgreSQL throttle: %w", err)
	}
	return time.Duration(wait) * time.Millisecond, nil
}

// Refund implements [accounts.ThrottleStore].
func (s *Throttle) Refund(ctx context.Context, _ time.Time, keys []accounts.ThrottleKey) error {
	err := s.withKeys(ctx, keys, func(tx pgx.Tx, counters []pgCounter) error {
		for i, k := range keys {
			c := counters[i]
			if !c.exists {
				continue
			}
			c.failures--
			if c.failures <= 0 {
				if _, err := tx.Exec(ctx, s.del, k.Kind, k.Key); err != nil {
					return err
				}
				continue
			}
			var until int64
			if d := k.Rule.Delay(c.failures); d > 0 {
				until = c.last + d.Milliseconds()
			}
			if _, err := tx.Exec(ctx, s.upsert, k.Kind, k.Key, c.failures, c.last, until, c.last+k.Rule.Window.Milliseconds()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("accounts: PostgreSQL throttle refund: %w", err)
	}
	return nil
}

// Reset implements [accounts.ThrottleStore].
func (s *Throttle) Reset(ctx context.Context, keys []accounts.ThrottleKey) error {
	batch := &pgx.Batch{}
	for _, k := range keys {
		batch.Queue(s.del, k.Kind, k.Key)
	}
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("accounts: PostgreSQL throttle reset: %w", err)
	}
	return nil
}

// DeviceKey implements [accounts.ThrottleStore]: the first node to ask creates it.
func (s *Throttle) DeviceKey(ctx context.Context) ([]byte, error) {
	if _, err := s.pool.Exec(ctx, s.keyIns, rand.Text()+rand.Text()); err != nil {
		return nil, fmt.Errorf("accounts: PostgreSQL device key: %w", err)
	}
	var key string
	if err := s.pool.QueryRow(ctx, s.keyGet).Scan(&key); err != nil {
		return nil, fmt.Errorf("accounts: PostgreSQL device key: %w", err)
	}
	return []byte(key), nil
}
