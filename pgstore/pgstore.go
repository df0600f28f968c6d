// Package pgstore is a PostgreSQL [cloakroom.Store] built on pgx.
//
// The caller builds the *pgxpool.Pool; [New] migrates the store's schema
// and returns a Store that uses the pool for every call. Close stops the
// store's background work but leaves the pool open.
//
// # Schema
//
// All tables live in [Config.Schema] ("cloakroom" by default), which New
// creates if missing:
//
//	sessions          key bytea PRIMARY KEY, user_id text (NULL when anonymous),
//	                  handle text, generation bigint, version bigint,
//	                  created_at timestamptz, expiry timestamptz,
//	                  record bytea (cloakroom.Record.MarshalBinary),
//	                  epoch bigint (0 for sessions stored before epochs)
//	user_generations  user_id text PRIMARY KEY, generation bigint (0 until
//	                  the first bump; written with a user's first session)
//	epoch             one row: the global epoch (no row until the first bump)
//	aux_records       key bytea PRIMARY KEY, version bigint, expires timestamptz,
//	                  ends_with_sessions boolean, epoch bigint, data bytea
//	schema_migrations version integer PRIMARY KEY, name text, applied_at timestamptz
//
// with indexes on sessions(user_id), sessions(expiry) and
// aux_records(expires). Migrations run in one transaction under a
// transaction-level advisory lock derived from the schema name, so any
// number of gateways may start at once.
//
// # Time
//
// Expiry decisions compare against [Config.Now], sent as a query parameter;
// the database clock is never consulted, so tests can move time and nodes
// agree with their own view of it. PostgreSQL keeps microseconds, so the
// store decides expiry at microsecond precision.
//
// Expired sessions and auxiliary records are never returned. A background
// goroutine also deletes them every [Config.PurgeInterval], at most
// [Config.PurgeBatch] rows per statement so a large backlog never holds long
// locks; [Store.Purge] runs the same work on demand.
//
// # Epoch
//
// Every read of a session, and of an auxiliary record that ends with the
// sessions, compares its epoch with the global one in the same statement, so
// BumpEpoch ends them on every node as it commits; it also deletes them in
// its transaction. Writes check the epoch without locking it: a write that
// raced a bump may leave a row of the old epoch, never found, until the
// purge deletes it at its expiry. Auxiliary records are never cached.
//
// # Cache
//
// With [Config.Cache], Find results are kept in process memory. Every
// Commit, Delete, BumpGeneration, BumpEpoch and Rotate, on any node, sends a
// NOTIFY in the same transaction on a channel derived from the schema name;
// each caching Store holds one dedicated connection that LISTENs on it and
// drops what changed.
//
// No node serves from its cache a session that a revocation (Delete,
// BumpGeneration, BumpEpoch, Rotate) ended once that call has returned. A
// caching Store trusts its cache only under a lease ([Config.CacheLease]),
// renewed each time it hears its own heartbeat, a NOTIFY it sends every
// quarter lease on the same channel: since PostgreSQL delivers notifications
// in commit order, hearing a heartbeat sent at t proves every invalidation
// committed before t was heard. A revocation returns once every caching node
// it has heard of has acknowledged it (usually within a millisecond or two),
// or once a lease has passed, by which time a node that did not hear it has
// stopped trusting its cache and reads PostgreSQL. A node whose listener
// stalls or loses its connection therefore falls back to PostgreSQL within
// one lease; a lost connection also flushes the cache at once. Updates
// (Commit) are not waited for: another node may serve the previous version
// of a live session for the few milliseconds the notification takes.
//
// A Store that has listened for less than a lease (it just started, or its
// listener just reconnected) cannot know every caching node yet, so its
// revocations wait up to a lease. A Store that does not listen (no cache,
// no WatchEnds) cannot hear acknowledgements and does not wait: every
// process that revokes sessions should use the same Config.Cache as the
// gateways.
//
// # Session ends
//
// Store is a [cloakroom.EndNotifier] through the same notifications:
// WatchEnds starts the listener if the cache has not, reports every Delete,
// BumpGeneration, BumpEpoch and Rotate made through any Store on the schema,
// and End{All: true} whenever the listener has (re)connected, since ends
// sent while it was not listening were missed.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/pgschema"
	"github.com/cloakroom/cloakroom/internal/purgeloop"
	"github.com/cloakroom/cloakroom/internal/sqlrows"
	"github.com/cloakroom/cloakroom/internal/storerules"
)

// Defaults for the zero fields of a [Config].
const (
	DefaultSchema        = "cloakroom"
	DefaultPurgeInterval = 5 * time.Minute
	DefaultPurgeBatch    = 1000
	DefaultCacheSize     = 10000
	DefaultCacheLease    = time.Second
)

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// Schema holds the store's tables and is created if missing.
	// Default: "cloakroom".
	Schema string
	// Now is the store's clock; every expiry decision compares against it.
	// Default: time.Now.
	Now func() time.Time
	// PurgeInterval is how often expired sessions and auxiliary records
	// are deleted in the background. Default: 5 minutes. A negative value
	// disables the background purge (see [Store.Purge]).
	PurgeInterval time.Duration
	// PurgeBatch bounds the rows one purge statement deletes. Default: 1000.
	PurgeBatch int
	// Cache keeps Find results in memory, invalidated through
	// LISTEN/NOTIFY. Default: false.
	Cache bool
	// CacheSize bounds the number of cached sessions. Default: 10000.
	CacheSize int
	// CacheLease is how long a caching node trusts its cache after
	// hearing its own heartbeat; heartbeats go out every quarter lease.
	// It bounds how long a revocation waits for a node that does not
	// acknowledge it, and how long a node whose listener stalls keeps
	// serving from its cache (never anything revoked after it stalled).
	// Default: 1 s.
	CacheLease time.Duration
	// Logger receives failures of the background purge and listener.
	// Default: slog.Default().
	Logger *slog.Logger
}

// Store is a [cloakroom.Store] in PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool       *pgxpool.Pool
	now        func() time.Time
	log        *slog.Logger
	purgeBatch int
	channel    string // NOTIFY channel shared by every Store on the schema
	q          queries

	cache *cache // nil unless Config.Cache
	hub   *hub   // the listener, running once listening is true
	// listening is set when the listener starts: with the cache, or at
	// the first WatchEnds.
	listening  bool
	listenMu   sync.Mutex
	background context.Context

	stop      context.CancelFunc
	running   sync.WaitGroup
	closeOnce sync.Once

	purgeHook atomic.Pointer[func(deleted int64)] // tests observe batches
}

var (
	_ cloakroom.Store  = (*Store)(nil)
	_ cloakroom.Pinger = (*Store)(nil)
)

// New migrates cfg.Schema in the database behind pool and returns a Store
// using it. It starts the background purge and, with cfg.Cache, the
// invalidation listener; Close stops both.
func New(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	schema, err := pgschema.Quote(cfg.Schema)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PurgeInterval == 0 {
		cfg.PurgeInterval = DefaultPurgeInterval
	}
	if cfg.PurgeBatch <= 0 {
		cfg.PurgeBatch = DefaultPurgeBatch
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheLease <= 0 {
		cfg.CacheLease = DefaultCacheLease
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	if err := migrate(ctx, pool, cfg.Schema, schema, migrations); err != nil {
		return nil, err
	}
	s := &Store{
		pool:       pool,
		now:        cfg.Now,
		log:        cfg.Logger,
		purgeBatch: cfg.PurgeBatch,
		channel:    notifyChannel(cfg.Schema),
		q:          newQueries(schema),
	}
	// Background work outlives New's ctx but keeps its values.
	background, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop, s.background = stop, background
	if cfg.Cache {
		s.cache = newCache(cfg.CacheSize)
	}
	s.hub = newHub(s, s.cache, cfg.CacheLease)
	if cfg.Cache {
		if err := s.startListener(ctx, true); err != nil {
			stop()
			return nil, err
		}
	}
	if cfg.PurgeInterval > 0 {
		s.running.Add(1)
		go s.purgeLoop(background, cfg.PurgeInterval)
	}
	return s, nil
}

// startListener connects the listener and starts it, once. When the
// connection fails, it returns the error if mustConnect, and otherwise
// starts the listener anyway, to connect with the usual retries.
func (s *Store) startListener(ctx context.Context, mustConnect bool) error {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	if s.listening {
		return nil
	}
	if s.background.Err() != nil {
		return errors.New("pgstore: store closed")
	}
	conn, err := s.hub.connect(ctx)
	if err != nil {
		if mustConnect {
			return err
		}
		s.log.WarnContext(ctx, "pgstore: session end listener cannot connect yet; retrying", "err", err)
		conn = nil
	}
	s.listening = true
	s.running.Add(1)
	go s.hub.run(s.background, conn)
	return nil
}

// revocation registers a revocation with the listener, if it runs.
func (s *Store) revocation() *revocation {
	s.listenMu.Lock()
	listening := s.listening
	s.listenMu.Unlock()
	if !listening {
		return nil
	}
	return s.hub.begin()
}

// Close stops the background purge and the invalidation listener, and
// disables the cache. It does not close the pool; the Store keeps working
// without a cache. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.listenMu.Lock()
		s.stop()
		s.listenMu.Unlock()
		s.running.Wait()
		if s.cache != nil {
			s.cache.setEnabled(false)
		}
	})
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pgstore: ping: %w", err)
	}
	return nil
}

// Find implements [cloakroom.Store]. With the cache enabled it answers from
// memory when it can.
func (s *Store) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	now := s.now()
	var token fillToken
	if s.cache != nil {
		if rec, ok := s.cache.get(key, now); ok {
			return rec, true, nil
		}
		// Taken before the query: a fill is refused if the key was
		// invalidated while the query ran, so the cache never keeps a
		// record older than an invalidation it saw.
		token = s.cache.reserve(key)
	}
	rec, found, err := s.findStored(ctx, key, now)
	if err != nil || !found {
		return cloakroom.Record{}, false, err
	}
	if s.cache != nil {
		s.cache.fill(token, rec)
	}
	return rec, true, nil
}

func (s *Store) findStored(ctx context.Context, key cloakroom.Key, now time.Time) (cloakroom.Record, bool, error) {
	rows, err := s.pool.Query(ctx, s.q.find, key[:], now)
	if err != nil {
		return cloakroom.Record{}, false, fmt.Errorf("pgstore: find %s: %w", key.Short(), err)
	}
	defer rows.Close()
	rec, found, err := sqlrows.First(rows, decodeRecord)
	if err == nil && found && rec.Key != key {
		err = errors.New("stored record has another key")
	}
	if err != nil {
		return cloakroom.Record{}, false, fmt.Errorf("pgstore: find %s: %w", key.Short(), err)
	}
	return rec, found, nil
}

// decodeRecord decodes the record column of the current row. In the usual
// binary format it decodes straight from pgx's read buffer, sparing a copy
// of what may be a large blob; UnmarshalBinary copies what it keeps.
func decodeRecord(rows pgx.Rows) (cloakroom.Record, error) {
	var rec cloakroom.Record
	var blob []byte
	if rows.FieldDescriptions()[0].Format == pgx.BinaryFormatCode {
		blob = rows.RawValues()[0]
	} else if err := rows.Scan(&blob); err != nil {
		return rec, err
	}
	if err := rec.UnmarshalBinary(blob); err != nil {
		return rec, err
	}
	// Clipped so a caller appending to Data reallocates instead of
	// writing into an array the cache or another caller shares.
	rec.Data = slices.Clip(rec.Data)
	return rec, nil
}

// Commit implements [cloakroom.Store]. The write is one statement: a
// compare-and-set on the version that also holds a share lock on the user's
// generation row, so a concurrent BumpGeneration either waits for it (and
// then deletes the session) or wins (and the commit sees the new
// generation and writes nothing). The epoch is checked, not locked (see
// the package documentation). A failed compare-and-set costs a second
// query, to tell ErrConflict from ErrNotFound.
func (s *Store) Commit(ctx context.Context, rec cloakroom.Record) error {
	blob, err := storerules.SQLBlob(rec)
	if err != nil {
		return fmt.Errorf("pgstore: commit %s: %w", rec.Key.Short(), err)
	}
	now := s.now()
	query := s.q.update
	if rec.Version == 1 {
		query = s.q.create
	}
	if s.cache != nil {
		s.cache.invalidateKey(rec.Key)
		defer s.cache.invalidateKey(rec.Key)
	}
	args := []any{rec.Key[:], rec.UserID, rec.Handle, int64(rec.Generation), int64(rec.Version),
		rec.CreatedAt, rec.Expiry(), blob, int64(rec.Epoch), now, s.channel, rec.Key.String()}
	var written bool
	if rec.UserID == "" {
		tag, err := s.pool.Exec(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("pgstore: commit %s: %w", rec.Key.Short(), err)
		}
		written = tag.RowsAffected() == 1
	} else if written, err = s.commitForUser(ctx, rec.UserID, query, args); err != nil {
		return fmt.Errorf("pgstore: commit %s: %w", rec.Key.Short(), err)
	}
	if written {
		return nil
	}
	return s.commitFailure(ctx, rec, now)
}

// commitForUser runs a commit after making sure the user has a generation
// row: the commit's share lock on that row is what orders it against a
// concurrent BumpGeneration, and a missing row cannot be locked. Both
// statements go in one round trip and one implicit transaction; the second
// takes a new snapshot, so it sees a row a bump committed meanwhile.
func (s *Store) commitForUser(ctx context.Context, userID, query string, args []any) (written bool, err error) {
	batch := &pgx.Batch{}
	batch.Queue(s.q.ensureGeneration, userID)
	batch.Queue(query, args...)
	results := s.pool.SendBatch(ctx, batch)
	defer func() {
		if closeErr := results.Close(); err == nil {
			err = closeErr
		}
	}()
	if _, err := results.Exec(); err != nil {
		return false, err
	}
	tag, err := results.Exec()
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// commitFailure explains a commit that wrote nothing.
func (s *Store) commitFailure(ctx context.Context, rec cloakroom.Record, now time.Time) error {
	var generation, epoch int64
	var live bool
	if err := s.pool.QueryRow(ctx, s.q.commitState, rec.Key[:], rec.UserID, now).Scan(&generation, &epoch, &live); err != nil {
		return fmt.Errorf("pgstore: commit %s: %w", rec.Key.Short(), err)
	}
	var revoked string
	switch {
	case rec.Epoch < uint64(epoch):
		revoked = fmt.Sprintf("epoch %d ended by %d", rec.Epoch, epoch)
	case rec.UserID != "" && rec.Generation < uint64(generation):
		revoked = fmt.Sprintf("generation %d revoked by %d", rec.Generation, generation)
	}
	return writeFailure("session", rec.Key, rec.Version, revoked, live)
}

// writeFailure explains a compare-and-set write of a session or an
// auxiliary record (what) that wrote nothing, from a fresh read: revoked,
// unless "", says how the written row's generation or epoch has passed;
// live, whether a live row holds the key. A race may change the verdict,
// but never into success: versions, generations and epochs only grow.
func writeFailure(what string, key cloakroom.Key, version uint64, revoked string, live bool) error {
	switch {
	case revoked != "":
		return fmt.Errorf("pgstore: commit %s %s: %s: %w", what, key.Short(), revoked, cloakroom.ErrNotFound)
	case version == 1:
		return fmt.Errorf("pgstore: create %s %s: %w", what, key.Short(), cloakroom.ErrConflict)
	case !live:
		return fmt.Errorf("pgstore: update %s %s: %w", what, key.Short(), cloakroom.ErrNotFound)
	default:
		return fmt.Errorf("pgstore: update %s %s from version %d: %w", what, key.Short(), version-1, cloakroom.ErrConflict)
	}
}

// Delete implements [cloakroom.Store].
func (s *Store) Delete(ctx context.Context, key cloakroom.Key) error {
	if s.cache != nil {
		s.cache.invalidateKey(key)
		defer s.cache.invalidateKey(key)
	}
	r := s.revocation()
	_, err := s.pool.Exec(ctx, s.q.delete, key[:], s.channel, prefixDeleted+key.String(), r.markerPayload())
	s.hub.finish(r, err == nil)
	if err != nil {
		return fmt.Errorf("pgstore: delete %s: %w", key.Short(), err)
	}
	// This process's watchers hear it at once; the NOTIFY follows.
	s.hub.publish(endEvent{key: key, hasKey: true})
	return nil
}

// List implements [cloakroom.Store]. Sessions created in the same
// microsecond are ordered by Handle.
func (s *Store) List(ctx context.Context, userID string) ([]cloakroom.Record, error) {
	if userID == "" {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.q.list, userID, s.now())
	if err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", err)
	}
	defer rows.Close()
	out, err := sqlrows.All(rows, decodeRecord)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", err)
	}
	return out, nil
}

// Generation implements [cloakroom.Store].
func (s *Store) Generation(ctx context.Context, userID string) (uint64, error) {
	var gen int64
	err := s.pool.QueryRow(ctx, s.q.generation, userID).Scan(&gen)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("pgstore: generation: %w", err)
	}
	return uint64(gen), nil
}

// BumpGeneration implements [cloakroom.Store]. It also deletes the user's
// sessions, in the same transaction.
func (s *Store) BumpGeneration(ctx context.Context, userID string) (uint64, error) {
	if s.cache != nil {
		s.cache.invalidateUser(userID)
		defer s.cache.invalidateUser(userID)
	}
	// The upsert waits for commits holding the row's share lock; the
	// delete, a new statement with a new snapshot, then sees them.
	gen, err := s.bumpAndRevoke(ctx, s.q.bump, []any{userID}, func(gen int64, marker string) (string, []any) {
		return s.q.revoke, []any{userID, gen, s.channel, bumpPayload(userID, gen), marker}
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: bump generation: %w", err)
	}
	s.hub.publish(endEvent{user: userID, generation: uint64(gen)})
	return uint64(gen), nil
}

// Epoch implements [cloakroom.Store]. It always reads PostgreSQL.
func (s *Store) Epoch(ctx context.Context) (uint64, error) {
	var epoch int64
	if err := s.pool.QueryRow(ctx, s.q.epoch).Scan(&epoch); err != nil {
		return 0, fmt.Errorf("pgstore: epoch: %w", err)
	}
	return uint64(epoch), nil
}

// BumpEpoch implements [cloakroom.Store]. Every read checks the epoch, so
// the sessions and auxiliary records of past epochs are dead once it
// commits; it also deletes them, in the same transaction, and returns,
// like BumpGeneration, once no node serves them from its cache.
func (s *Store) BumpEpoch(ctx context.Context) (uint64, error) {
	if s.cache != nil {
		s.cache.flush()
		defer s.cache.flush()
	}
	epoch, err := s.bumpAndRevoke(ctx, s.q.bumpEpoch, nil, func(epoch int64, marker string) (string, []any) {
		return s.q.endEpoch, []any{epoch, s.channel, epochPayload(epoch), marker}
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: bump epoch: %w", err)
	}
	s.hub.publish(endEvent{epoch: uint64(epoch)})
	return uint64(epoch), nil
}

// bumpAndRevoke runs, in one transaction, bump, which answers a counter's
// new value, then the statement revoke makes of that value and of the
// marker to send last. Once committed, it returns when no node serves from
// its cache what the bump ended.
func (s *Store) bumpAndRevoke(ctx context.Context, bump string, bumpArgs []any, revoke func(value int64, marker string) (string, []any)) (int64, error) {
	var value int64
	r := s.revocation()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, bump, bumpArgs...).Scan(&value); err != nil {
			return err
		}
		query, args := revoke(value, r.markerPayload())
		_, err := tx.Exec(ctx, query, args...)
		return err
	})
	s.hub.finish(r, err == nil)
	return value, err
}

// Purge deletes expired sessions and auxiliary records now, in batches of
// Config.PurgeBatch, and returns how many it deleted. The background purge
// calls it; so may an operator's job when the background purge is
// disabled.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	now := s.now()
	var total int64
	for _, query := range []string{s.q.purge, s.q.purgeAux} {
		deleted, err := s.purgeBatches(ctx, query, now)
		total += deleted
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// purgeBatches runs the purge statement query until a batch comes short.
func (s *Store) purgeBatches(ctx context.Context, query string, now time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, query, now, s.purgeBatch)
		if err != nil {
			return total, fmt.Errorf("pgstore: purge: %w", err)
		}
		deleted := tag.RowsAffected()
		total += deleted
		if hook := s.purgeHook.Load(); hook != nil {
			(*hook)(deleted)
		}
		// A short batch means the backlog is done, or that another node
		// is purging the rows it skipped as locked.
		if deleted < int64(s.purgeBatch) {
			return total, nil
		}
	}
}

func (s *Store) purgeLoop(ctx context.Context, interval time.Duration) {
	defer s.running.Done()
	purgeloop.Run(ctx, interval, s.Purge, func(err error) {
		s.log.WarnContext(ctx, "pgstore: purging expired sessions and records failed", "err", err)
	})
}
