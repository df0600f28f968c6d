// Package sqlitestore is a [cloakroom.Store] in a single SQLite file, the
// default store for a one-node deployment. It uses modernc.org/sqlite, a
// pure-Go SQLite, so it needs no cgo.
//
// Sessions are durable: a committed session survives a restart and a crash of
// the process (kill -9). [Open] runs the database in WAL mode, so reads go on
// while a write is in progress; writes are serialized through one connection,
// as SQLite allows only one writer, so SQLITE_BUSY does not reach callers.
//
// The schema is created and migrated when the store opens. Its tables are
// sessions, user_generations, global_epoch, aux_records and schema_version
// (each name preceded by [Config.TablePrefix]); an application may keep its
// own tables in the same file through [Store.DB], and version them with its
// own row in schema_version. Sessions stored before the global epoch
// existed are kept, at epoch 0.
//
// Expiry is decided in whole milliseconds: a session or auxiliary record
// stops being found at the start of the millisecond its expiry falls in,
// never later.
//
// Revocations (Delete, BumpGeneration, BumpEpoch, Rotate) are commits to
// the file like any other, so they hold for every store on the file once
// the call returns: every query checks each row against the current
// generations and epoch, and every cache drops what a commit may have
// changed before it answers again (see Cache). BumpEpoch also deletes what
// it ended, in purge batches. Auxiliary records are never cached.
//
// # Cache
//
// A store made by [Open] keeps the sessions Find returned in memory, and
// answers from there while nothing has been committed to the file since
// they were read. It checks that on every Find, by reading the wal-index
// header SQLite keeps in the -shm file next to the database, which every
// commit of every process rewrites (one pread of 48 bytes, well under a
// microsecond, where a query costs several). So a session deleted or
// revoked by another process using the file, such as the cloakroom user
// and sessions commands, is refused by the very next Find, as without the
// cache. The store's own writes drop the sessions they change before they
// return and leave the rest cached: each write runs alone on the write
// connection under SQLite's write lock, and PRAGMA data_version read on
// that connection before and after tells whether anyone else committed in
// between, in which case the whole cache is dropped. Any other commit
// (an application's own tables in the file included) drops the whole
// cache at the next Find. [Config.DisableCache] turns the cache off;
// answers are the same either way, only their cost changes.
package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/endfanout"
	"github.com/cloakroom/cloakroom/internal/purgeloop"
	"github.com/cloakroom/cloakroom/internal/sqlrows"
	"github.com/cloakroom/cloakroom/internal/storerules"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Config configures a Store. The zero value is ready to use and secure.
type Config struct {
	// Now is the store's clock; every expiry decision reads it. Default:
	// time.Now.
	Now func() time.Time

	// PurgeInterval is how often a background goroutine deletes expired
	// sessions and auxiliary records, in small batches so writers are not
	// held up. Default: five minutes. A negative value turns the goroutine
	// off ([Store.Purge] can still be called). Expired rows are never
	// returned, purged or not; purging only frees space and removes their
	// data from the file.
	PurgeInterval time.Duration

	// TablePrefix is put before the name of every table and index the store
	// creates, so it can share a database with an application whose names
	// would clash. Letters, digits and underscores only. Default: none.
	TablePrefix string

	// BusyTimeout is how long a statement waits for a lock held by another
	// process using the same file before it fails. Default: five seconds.
	// Used by Open only; with New the caller configures its connections.
	BusyTimeout time.Duration

	// MaxReadConns bounds the pool of connections serving List and
	// Generation concurrently. Find has connections of its own, GOMAXPROCS
	// of them (at least 2), and the cache one more, which it holds open.
	// Default: GOMAXPROCS, at least 4. Used by Open only.
	MaxReadConns int

	// RelaxedDurability runs SQLite with synchronous=NORMAL instead of FULL.
	// In WAL mode both keep every committed write across a crash of the
	// process (kill -9). With NORMAL, a power loss or an operating-system
	// crash can roll back the latest commits, which may bring back a session
	// that was deleted or revoked by BumpGeneration. Default: false, so each
	// commit waits for fsync. Used by Open only.
	RelaxedDurability bool

	// Logger receives failures of the background purge, which has no caller
	// to return them to. Default: slog.Default().
	Logger *slog.Logger

	// DisableCache turns off the in-process cache Find answers from. The
	// cache is exact: every Find first checks that nothing, in this
	// process or another one using the file (the cloakroom user and
	// sessions commands, for instance), committed since the cached
	// records were read, and this store's own writes drop what they
	// change before they return. So it changes no answer, only the cost
	// of one: see the package documentation. Default: false, the cache is
	// on for a store made by Open. A store made by New never caches.
	DisableCache bool

	// CacheSize bounds the sessions the cache holds. Default: 10000.
	// Used by Open only.
	CacheSize int
}

const (
	defaultCacheSize     = 10000
	defaultPurgeInterval = 5 * time.Minute
	defaultBusyTimeout   = 5 * time.Second
	// purgeBatch bounds the rows one purge transaction deletes, so the
	// write lock is never held for long.
	purgeBatch = 500
)

// Store is a [cloakroom.Store] backed by SQLite. It is safe for concurrent
// use. It implements [cloakroom.Rotator], [cloakroom.EndNotifier] and
// [cloakroom.Pinger].
type Store struct {
	read  *sql.DB // Find, List, Generation: many connections
	write *sql.DB // every write: one connection when opened by Open
	owned bool    // Close closes read and write

	// writeSlot serializes this store's writes when read and write share a
	// pool (New), where two connections writing at once could meet
	// SQLITE_BUSY. Unlike a mutex, waiting for it honours the context.
	writeSlot chan struct{}

	now    func() time.Time
	logger *slog.Logger
	prefix string // Config.TablePrefix

	// cache follows the file's commits (see cache.go); nil for a store
	// made by New. With Config.DisableCache it only tracks commits, for
	// WatchEnds, and cacheServes is false.
	cache       *cache
	cacheServes bool
	header      *headerFile
	anchor      *sql.Conn // held open while header is read

	// readers holds the connections pinned for Find (see reader.go); nil
	// for a store made by New, which finds through database/sql.
	readers  chan *pinnedReader
	nReaders int

	// testHookAfterCommit, set by tests, runs between a cached write's
	// COMMIT and its accounting.
	testHookAfterCommit func()

	findStmt, listStmt, generationStmt, epochStmt, findAuxStmt *sql.Stmt // on read
	createStmt, updateStmt, commitStateStmt, deleteStmt,
	bumpStmt, dropRevokedStmt, bumpEpochStmt, purgeStmt,
	rotateOldStmt, rotateNewStmt,
	createAuxStmt, updateAuxStmt, auxStateStmt, deleteAuxStmt, purgeAuxStmt *sql.Stmt // on write

	// publishedEpoch is the highest epoch reported to WatchEnds
	// subscribers; epochUnchecked is set when another connection has
	// committed since a watcher last read the epoch (see notify.go).
	publishedEpoch atomic.Uint64
	epochUnchecked atomic.Bool

	// Subscribers of WatchEnds. Close closes it and waits for them.
	ends *endfanout.Fanout

	stopPurge context.CancelFunc
	purgeDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var (
	_ cloakroom.Store       = (*Store)(nil)
	_ cloakroom.Rotator     = (*Store)(nil)
	_ cloakroom.EndNotifier = (*Store)(nil)
	_ cloakroom.Pinger      = (*Store)(nil)
)

// Open opens or creates the SQLite database at path and returns a store on
// it, with the schema migrated to the current version. A new file is created
// readable by its owner only.
//
// The file is opened in WAL mode with busy_timeout, foreign keys on and
// synchronous=FULL (NORMAL with [Config.RelaxedDurability]). Writes go
// through a single connection and begin with BEGIN IMMEDIATE; reads use a
// separate pool and run concurrently with each other and with the writer.
//
// path is a file name, not a URI; ":memory:" is refused because the read
// and write pools would see two different databases. For an in-memory
// database, build a one-connection *sql.DB and use [New].
func Open(ctx context.Context, path string, cfg Config) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlitestore: open %q: want the path of a database file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %q: %w", path, err)
	}
	if err := createPrivate(abs); err != nil {
		return nil, fmt.Errorf("sqlitestore: open %q: %w", path, err)
	}

	busy := cfg.BusyTimeout
	if busy <= 0 {
		busy = defaultBusyTimeout
	}
	synchronous := "FULL"
	if cfg.RelaxedDurability {
		synchronous = "NORMAL"
	}
	common := url.Values{}
	common.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	common.Add("_pragma", "foreign_keys(1)")

	writeParams := cloneValues(common)
	writeParams.Add("_pragma", "journal_mode(WAL)")
	writeParams.Add("_pragma", "synchronous("+synchronous+")")
	// Overwrite deleted sessions' data where it costs no extra I/O.
	writeParams.Add("_pragma", "secure_delete(FAST)")
	// Take the write lock at BEGIN: a deferred transaction that reads
	// first can fail with SQLITE_BUSY_SNAPSHOT, which busy_timeout does
	// not retry, when another process writes in between.
	writeParams.Set("_txlock", "immediate")
	write, err := sql.Open("sqlite", fileURI(abs, writeParams))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %q: %w", path, err)
	}
	// SQLite has one writer; a single connection queues writers in Go,
	// where waiting honours the context, instead of in SQLite's busy loop.
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// Open the write connection first: it switches the file to WAL before
	// any reader connects.
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlitestore: open %q: %w", path, err)
	}

	readParams := cloneValues(common)
	readParams.Add("_pragma", "query_only(1)")
	read, err := sql.Open("sqlite", fileURI(abs, readParams))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlitestore: open %q: %w", path, err)
	}
	readers := cfg.MaxReadConns
	if readers <= 0 {
		readers = max(runtime.GOMAXPROCS(0), 4)
	}
	pinned := max(runtime.GOMAXPROCS(0), 2)
	readers += pinned + 1 // and the anchor of the wal-index header

	read.SetMaxOpenConns(readers)
	// Keep every reader open: a new connection must re-prepare statements.
	read.SetMaxIdleConns(readers)
	read.SetConnMaxLifetime(0)
	read.SetConnMaxIdleTime(0)

	s, err := newStore(ctx, read, write, true, cfg)
	if err != nil {
		read.Close()
		write.Close()
		return nil, err
	}
	if err := s.pinReaders(ctx, pinned); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlitestore: open %q: %w", path, err)
	}
	// The cache's watch of the file also tells WatchEnds of other
	// processes' commits, so it runs without the cache too, if it can.
	if err := s.startCache(ctx, abs, cfg); err != nil {
		if !cfg.DisableCache {
			s.Close()
			return nil, fmt.Errorf("sqlitestore: open %q: cache: %w (Config.DisableCache runs without it)", path, err)
		}
		s.logger.WarnContext(ctx, "sqlitestore: cannot follow the file's wal-index header; session ends made by other processes will not be notified", "err", err)
	}
	s.cacheServes = s.cache != nil && !cfg.DisableCache
	s.startPurge(cfg.PurgeInterval)
	return s, nil
}

// pinReaders pins n connections of the read pool for Find.
func (s *Store) pinReaders(ctx context.Context, n int) error {
	s.readers = make(chan *pinnedReader, n)
	for range n {
		r, err := pinReader(ctx, s.read, s.findStmtQuery())
		if err != nil {
			return fmt.Errorf("pin a reader: %w", err)
		}
		s.readers <- r
		s.nReaders++
	}
	return nil
}

// startCache sets up the cache of a store made by Open.
func (s *Store) startCache(ctx context.Context, abs string, cfg Config) error {
	// A connection held for the store's life keeps the -shm file in
	// place (see headerFile); the query makes it open the WAL.
	anchor, err := s.read.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := dataVersion(ctx, anchor); err != nil {
		anchor.Close()
		return err
	}
	s.anchor = anchor
	// The -shm file exists now: the migration went through WAL.
	header, err := openHeader(abs)
	if err != nil {
		return err
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = defaultCacheSize
	}
	s.header = header
	s.cache = newCache(header, size)
	s.cache.onForeignWrite = func() {
		s.epochUnchecked.Store(true)
		s.ends.Publish(cloakroom.End{All: true})
	}
	s.cache.onBroken = func(reason string) {
		s.logger.Error("sqlitestore: cache turned off; every check now reads the database", "reason", reason)
	}
	return nil
}

// New returns a store on a database the caller opened with the "sqlite"
// driver, and migrates its schema. The store uses db for reads and writes;
// it serializes its own writes, but the caller should open db with a
// busy_timeout (other processes, and the caller's own writes, may hold the
// lock) and in WAL mode so reads do not wait for writes. Close does not
// close db.
func New(ctx context.Context, db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlitestore: New with a nil *sql.DB")
	}
	s, err := newStore(ctx, db, db, false, cfg)
	if err != nil {
		return nil, err
	}
	s.startPurge(cfg.PurgeInterval)
	return s, nil
}

func newStore(ctx context.Context, read, write *sql.DB, owned bool, cfg Config) (*Store, error) {
	if cfg.TablePrefix != "" && !tablePrefixPattern.MatchString(cfg.TablePrefix) {
		return nil, fmt.Errorf("sqlitestore: table prefix %q: want letters, digits and underscores", cfg.TablePrefix)
	}
	if err := migrate(ctx, write, cfg.TablePrefix); err != nil {
		return nil, err
	}
	s := &Store{
		ends:      endfanout.New(),
		read:      read,
		write:     write,
		owned:     owned,
		writeSlot: make(chan struct{}, 1),
		now:       cfg.Now,
		prefix:    cfg.TablePrefix,
		logger:    cfg.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if err := s.prepare(ctx, cfg.TablePrefix); err != nil {
		s.closeStatements()
		return nil, err
	}
	epoch, err := s.Epoch(ctx)
	if err != nil {
		s.closeStatements()
		return nil, err
	}
	s.publishedEpoch.Store(epoch)
	// No purge runs until the caller has built the whole Store
	// (startPurge); Close meanwhile has none to stop.
	s.stopPurge, s.purgeDone = func() {}, make(chan struct{})
	close(s.purgeDone)
	return s, nil
}

// startPurge starts the background purge, once the Store is complete: the
// purge reads fields (the cache) that Open sets after newStore.
func (s *Store) startPurge(interval time.Duration) {
	if interval == 0 {
		interval = defaultPurgeInterval
	}
	if interval < 0 {
		return
	}
	purgeCtx, stop := context.WithCancel(context.Background())
	s.stopPurge, s.purgeDone = stop, make(chan struct{})
	go s.purgeLoop(purgeCtx, interval)
}

// liveSessionAt is the SQL condition for a session row s that Find may
// return: not expired at the parameter now, and revoked neither by a
// generation bump nor by an epoch bump.
func liveSessionAt(now string) string {
	return `s.expiry_unix_ms > ` + now + `
	AND s.generation >= coalesce((SELECT g.generation FROM {p}user_generations AS g WHERE g.user_id = s.user_id), 0)
	AND s.epoch >= ` + currentEpoch
}

// currentEpoch is the SQL value of the global epoch. SQLite evaluates it
// once per statement: it does not depend on the row.
const currentEpoch = `coalesce((SELECT e.epoch FROM {p}global_epoch AS e WHERE e.id = 0), 0)`

// findQuery is Find's: on every request's path, so with numbered
// parameters, which spare the allocation of a sql.NamedArg each. ?1 key,
// ?2 now.
var findQuery = `SELECT s.record FROM {p}sessions AS s WHERE s.key = ?1 AND ` + liveSessionAt("?2")

// liveSession is liveSessionAt the named parameter :now.
var liveSession = liveSessionAt(":now")

// userGeneration is the SQL value of the current generation of :user.
const userGeneration = `coalesce((SELECT g.generation FROM {p}user_generations AS g WHERE g.user_id = :user), 0)`

// statement is one of the store's prepared statements: the pool it runs
// on, where it is kept, and its query, with "{p}" for the table prefix.
type statement struct {
	db    *sql.DB
	dst   **sql.Stmt
	query string
}

// prepare prepares every statement the store runs. Each write transaction
// (Commit, BumpGeneration) starts with a statement that writes: in a
// deferred transaction, as New with a caller's DSN gives, that takes the
// write lock before anything is read, so the transaction cannot fail on a
// stale snapshot.
func (s *Store) prepare(ctx context.Context, prefix string) error {
	statements := []statement{
		{s.read, &s.findStmt, findQuery},
		{s.read, &s.listStmt, `SELECT s.record FROM {p}sessions AS s WHERE s.user_id = :user AND ` + liveSession},
		{s.read, &s.generationStmt, `SELECT ` + userGeneration},
		{s.read, &s.epochStmt, `SELECT ` + currentEpoch},

		// Creates the session, or replaces a dead row left under the same
		// key; changes nothing if the key holds a live session or the
		// record's generation or epoch is stale.
		{s.write, &s.createStmt, `
INSERT INTO {p}sessions AS s (key, user_id, handle, generation, version, expiry_unix_ms, epoch, record)
SELECT :key, :user, :handle, :generation, 1, :expiry, :epoch, :record
WHERE :generation >= ` + userGeneration + ` AND :epoch >= ` + currentEpoch + `
ON CONFLICT (key) DO UPDATE SET
	user_id = excluded.user_id, handle = excluded.handle, generation = excluded.generation,
	version = excluded.version, expiry_unix_ms = excluded.expiry_unix_ms, epoch = excluded.epoch,
	record = excluded.record
WHERE NOT (` + liveSession + `)`},
		// Compare-and-set on version; changes nothing unless the stored
		// session is live at version :previous and the record's
		// generation and epoch are current.
		{s.write, &s.updateStmt, `
UPDATE {p}sessions AS s SET
	user_id = :user, handle = :handle, generation = :generation,
	version = :version, expiry_unix_ms = :expiry, epoch = :epoch, record = :record
WHERE s.key = :key AND s.version = :previous AND ` + liveSession + `
	AND :generation >= ` + userGeneration + ` AND :epoch >= ` + currentEpoch},
		// Why a Commit changed nothing: the current generation of the
		// record's user, the current epoch, and the version of the live
		// session under the key (NULL if there is none).
		{s.write, &s.commitStateStmt, `
SELECT ` + userGeneration + `, ` + currentEpoch + `,
	(SELECT s.version FROM {p}sessions AS s WHERE s.key = :key AND ` + liveSession + `)`},
		{s.write, &s.deleteStmt, `DELETE FROM {p}sessions WHERE key = :key`},
		{s.write, &s.bumpStmt, `
INSERT INTO {p}user_generations (user_id, generation) VALUES (:user, 1)
ON CONFLICT (user_id) DO UPDATE SET generation = generation + 1
RETURNING generation`},
		{s.write, &s.dropRevokedStmt, `DELETE FROM {p}sessions WHERE user_id = :user AND generation < :generation`},
		{s.write, &s.bumpEpochStmt, `
INSERT INTO {p}global_epoch (id, epoch) VALUES (0, 1)
ON CONFLICT (id) DO UPDATE SET epoch = epoch + 1
RETURNING epoch`},
		// Rotate's view of the old session: whether it is unexpired, its
		// user, its generation, its user's current one, its version, its
		// epoch and the current one (no row if it is missing or expired).
		{s.write, &s.rotateOldStmt, `
SELECT s.user_id, s.generation, s.version,
	coalesce((SELECT g.generation FROM {p}user_generations AS g WHERE g.user_id = s.user_id), 0),
	s.epoch, ` + currentEpoch + `
FROM {p}sessions AS s WHERE s.key = :old AND s.expiry_unix_ms > :now`},
		// Rotate's view for the new session: the current generation of
		// :user and the current epoch.
		{s.write, &s.rotateNewStmt, `SELECT ` + userGeneration + `, ` + currentEpoch},
		// Expired sessions, and those a global revocation left behind.
		{s.write, &s.purgeStmt, `
DELETE FROM {p}sessions WHERE rowid IN (
	SELECT rowid FROM {p}sessions WHERE expiry_unix_ms <= :now OR epoch < ` + currentEpoch + ` LIMIT :limit)`},
	}
	statements = append(statements, s.auxStatements()...)
	for _, st := range statements {
		stmt, err := st.db.PrepareContext(ctx, withPrefix(prefix, st.query))
		if err != nil {
			return fmt.Errorf("sqlitestore: prepare %q: %w", strings.Join(strings.Fields(st.query), " "), err)
		}
		*st.dst = stmt
	}
	return nil
}

// DB returns the handle the store writes through, for an application that
// keeps its own tables in the same file. With Open it has a single
// connection, which serializes every write to the file: keep transactions
// on it short. Do not close it; [Store.Close] does.
func (s *Store) DB() *sql.DB { return s.write }

// Find implements [cloakroom.Store]. With the cache it answers from memory
// when nothing was committed to the file since the record was read.
func (s *Store) Find(ctx context.Context, key cloakroom.Key) (cloakroom.Record, bool, error) {
	nowMs := s.now().UnixMilli()
	var tok fillToken
	if s.cacheServes {
		rec, ok, t := s.cache.get(key, nowMs)
		if ok {
			return rec, true, nil
		}
		tok = t
	}
	rec, found, err := s.findStored(ctx, key, nowMs)
	if found && s.cacheServes {
		s.cache.fill(tok, rec)
	}
	return rec, found, err
}

// findStored reads the live session under key from the database.
//
// A read never waits for a writer in WAL mode, so the query runs without
// ctx's cancellation: a cancelable context costs every query two
// goroutines (database/sql's and the driver's watchers), more than the
// query itself. A context already done is refused up front.
func (s *Store) findStored(ctx context.Context, key cloakroom.Key, nowMs int64) (cloakroom.Record, bool, error) {
	if err := ctx.Err(); err != nil {
		return cloakroom.Record{}, false, fmt.Errorf("sqlitestore: find %s: %w", key.Short(), err)
	}
	if s.readers != nil {
		return s.findPinned(ctx, key, nowMs)
	}
	rows, err := s.findStmt.QueryContext(context.WithoutCancel(ctx), key[:], nowMs)
	if err != nil {
		return cloakroom.Record{}, false, fmt.Errorf("sqlitestore: find %s: %w", key.Short(), err)
	}
	defer rows.Close()
	rec, found, err := sqlrows.First(rows, scanRecord)
	return checkFound(key, rec, found, err)
}

// findPinned is findStored on a pinned reader.
func (s *Store) findPinned(ctx context.Context, key cloakroom.Key, nowMs int64) (cloakroom.Record, bool, error) {
	var r *pinnedReader
	select {
	case r = <-s.readers:
	case <-ctx.Done():
		return cloakroom.Record{}, false, fmt.Errorf("sqlitestore: find %s: %w", key.Short(), ctx.Err())
	}
	rec, found, err := r.find(key, nowMs)
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		// The connection is gone: pin a new one for the next call. If
		// that fails too, the old reader goes back and the next call
		// tries again.
		if fresh, perr := pinReader(context.WithoutCancel(ctx), s.read, s.findStmtQuery()); perr == nil {
			r.close()
			r = fresh
		}
	}
	s.readers <- r
	return checkFound(key, rec, found, err)
}

// checkFound is the answer of a Find for key that read rec (if found) or
// failed with err: a record stored under another key is an error too.
func checkFound(key cloakroom.Key, rec cloakroom.Record, found bool, err error) (cloakroom.Record, bool, error) {
	if err == nil && found && rec.Key != key {
		err = errors.New("stored record holds another key")
	}
	if err != nil {
		return cloakroom.Record{}, false, fmt.Errorf("sqlitestore: find %s: %w", key.Short(), err)
	}
	return rec, found, nil
}

// scanRecord decodes the record column of the current row. Scanning into
// RawBytes skips a copy of the blob; UnmarshalBinary copies what it keeps.
func scanRecord(rows *sql.Rows) (cloakroom.Record, error) {
	var raw sql.RawBytes
	if err := rows.Scan(&raw); err != nil {
		return cloakroom.Record{}, err
	}
	var rec cloakroom.Record
	if err := rec.UnmarshalBinary(raw); err != nil {
		return cloakroom.Record{}, err
	}
	return rec, nil
}

// Commit implements [cloakroom.Store].
func (s *Store) Commit(ctx context.Context, rec cloakroom.Record) error {
	blob, err := storerules.SQLBlob(rec)
	if err != nil {
		return fmt.Errorf("sqlitestore: commit %s: %w", rec.Key.Short(), err)
	}
	args := recordArgs(rec, blob, s.now().UnixMilli())
	err = s.commitVersioned(ctx, change{keys: []cloakroom.Key{rec.Key}}, rec.Version, s.createStmt, s.updateStmt, args, func(tx *sql.Tx, args []any) error {
		return s.refusal(ctx, tx, rec, args)
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: commit %s: %w", rec.Key.Short(), err)
	}
	return nil
}

// recordArgs are the named arguments of the create and update statements.
func recordArgs(rec cloakroom.Record, blob []byte, nowMs int64) []any {
	var user any // NULL for an anonymous session
	if rec.UserID != "" {
		user = rec.UserID
	}
	return []any{
		sql.Named("key", rec.Key[:]),
		sql.Named("user", user),
		sql.Named("handle", rec.Handle),
		sql.Named("generation", int64(rec.Generation)),
		sql.Named("epoch", int64(rec.Epoch)),
		sql.Named("expiry", rec.Expiry().UnixMilli()),
		sql.Named("record", blob),
		sql.Named("now", nowMs),
	}
}

// refusal explains a Commit that changed nothing, reading in the same
// transaction so the answer matches what the write saw.
func (s *Store) refusal(ctx context.Context, tx *sql.Tx, rec cloakroom.Record, args []any) error {
	var userGen, epoch int64
	var storedVersion sql.NullInt64
	// The state query reads :key, :user and :now; the driver ignores the
	// write's other named arguments.
	if err := tx.StmtContext(ctx, s.commitStateStmt).QueryRowContext(ctx, args...).Scan(&userGen, &epoch, &storedVersion); err != nil {
		return err
	}
	switch {
	case int64(rec.Epoch) < epoch:
		return fmt.Errorf("epoch %d revoked, the current one is %d: %w", rec.Epoch, epoch, cloakroom.ErrNotFound)
	case rec.UserID != "" && int64(rec.Generation) < userGen:
		return fmt.Errorf("generation %d revoked, user is at %d: %w", rec.Generation, userGen, cloakroom.ErrNotFound)
	case rec.Version == 1:
		return fmt.Errorf("create: key exists: %w", cloakroom.ErrConflict)
	case !storedVersion.Valid:
		return fmt.Errorf("update to version %d: %w", rec.Version, cloakroom.ErrNotFound)
	default:
		return fmt.Errorf("update to version %d, stored version is %d: %w", rec.Version, storedVersion.Int64, cloakroom.ErrConflict)
	}
}

// Delete implements [cloakroom.Store].
func (s *Store) Delete(ctx context.Context, key cloakroom.Key) error {
	var deleted bool
	err := s.inWriteTx(ctx, change{keys: []cloakroom.Key{key}}, func(tx *sql.Tx) (bool, error) {
		var err error
		deleted, err = s.deleteIn(ctx, tx, key)
		return deleted, err
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: delete %s: %w", key.Short(), err)
	}
	if deleted {
		s.ends.Publish(cloakroom.End{Key: key})
	}
	return nil
}

// deleteIn deletes the session under key in tx and reports whether there
// was one.
func (s *Store) deleteIn(ctx context.Context, tx *sql.Tx, key cloakroom.Key) (bool, error) {
	res, err := tx.StmtContext(ctx, s.deleteStmt).ExecContext(ctx, sql.Named("key", key[:]))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// List implements [cloakroom.Store]. Anonymous sessions belong to no user,
// so List("") is empty.
func (s *Store) List(ctx context.Context, userID string) ([]cloakroom.Record, error) {
	if userID == "" {
		return nil, nil
	}
	rows, err := s.listStmt.QueryContext(ctx, sql.Named("user", userID), sql.Named("now", s.now().UnixMilli()))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: list: %w", err)
	}
	defer rows.Close()
	out, err := sqlrows.All(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: list: %w", err)
	}
	// Sorted here rather than in SQL: the record keeps CreatedAt to the
	// nanosecond, the columns do not.
	slices.SortFunc(out, storerules.ByCreation)
	return out, nil
}

// Generation implements [cloakroom.Store].
func (s *Store) Generation(ctx context.Context, userID string) (uint64, error) {
	var gen int64
	if err := s.generationStmt.QueryRowContext(ctx, sql.Named("user", userID)).Scan(&gen); err != nil {
		return 0, fmt.Errorf("sqlitestore: generation: %w", err)
	}
	return uint64(gen), nil
}

// BumpGeneration implements [cloakroom.Store]. In the same transaction it
// deletes the user's sessions, which the new generation has revoked.
func (s *Store) BumpGeneration(ctx context.Context, userID string) (uint64, error) {
	var gen int64
	err := s.inWriteTx(ctx, change{user: userID}, func(tx *sql.Tx) (bool, error) {
		var err error
		gen, err = s.bumpIn(ctx, tx, userID)
		return err == nil, err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: bump generation: %w", err)
	}
	s.ends.Publish(cloakroom.End{UserID: userID, Generation: uint64(gen)})
	return uint64(gen), nil
}

// bumpIn increments the user's generation in tx, deletes the sessions it
// revokes, and returns the new generation.
func (s *Store) bumpIn(ctx context.Context, tx *sql.Tx, userID string) (int64, error) {
	var gen int64
	user := sql.Named("user", userID)
	if err := tx.StmtContext(ctx, s.bumpStmt).QueryRowContext(ctx, user).Scan(&gen); err != nil {
		return 0, err
	}
	_, err := tx.StmtContext(ctx, s.dropRevokedStmt).ExecContext(ctx, user, sql.Named("generation", gen))
	return gen, err
}

// Epoch implements [cloakroom.Store].
func (s *Store) Epoch(ctx context.Context) (uint64, error) {
	var epoch int64
	if err := s.epochStmt.QueryRowContext(ctx).Scan(&epoch); err != nil {
		return 0, fmt.Errorf("sqlitestore: epoch: %w", err)
	}
	return uint64(epoch), nil
}

// BumpEpoch implements [cloakroom.Store]. Its commit ends every session
// of an older epoch for every store on the file: their queries compare
// each row's epoch with the current one, and their caches are dropped at
// the next look at the file, as for any other commit. It then deletes
// the sessions and auxiliary records it ended, in purge batches, so their
// data leaves the file now rather than at the next purge; a failure there
// is only logged, as the bump itself took effect.
func (s *Store) BumpEpoch(ctx context.Context) (uint64, error) {
	var epoch int64
	err := s.inWriteTx(ctx, change{all: true}, func(tx *sql.Tx) (bool, error) {
		err := tx.StmtContext(ctx, s.bumpEpochStmt).QueryRowContext(ctx).Scan(&epoch)
		return err == nil, err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: bump epoch: %w", err)
	}
	s.publishEpoch(uint64(epoch))
	if _, err := s.Purge(ctx); err != nil {
		s.logger.WarnContext(ctx, "sqlitestore: the sessions the epoch bump ended are left for the next purge", "epoch", epoch, "err", err)
	}
	return uint64(epoch), nil
}

// publishEpoch reports End{Epoch: epoch} to WatchEnds subscribers unless
// an epoch as high was reported already.
func (s *Store) publishEpoch(epoch uint64) {
	for {
		published := s.publishedEpoch.Load()
		if epoch <= published {
			return
		}
		if s.publishedEpoch.CompareAndSwap(published, epoch) {
			s.ends.Publish(cloakroom.End{Epoch: epoch})
			return
		}
	}
}

// Rotate implements [cloakroom.Rotator]: the checks, the bump, the new
// session and the old one's deletion are one transaction, which holds
// SQLite's write lock from its first statement (BEGIN IMMEDIATE), so no
// other writer, in this process or another, can come between the checks
// and the writes.
func (s *Store) Rotate(ctx context.Context, r cloakroom.Rotation) (cloakroom.Record, error) {
	rec := r.New
	if err := r.Check(); err != nil {
		return cloakroom.Record{}, fmt.Errorf("sqlitestore: rotate %s to %s: %w", r.Old.Short(), rec.Key.Short(), err)
	}
	var zero cloakroom.Key
	ch := change{keys: []cloakroom.Key{rec.Key}}
	if r.Old != zero {
		ch.keys = append(ch.keys, r.Old)
	}
	if r.Bump {
		ch.user = rec.UserID
	}
	var oldDeleted bool
	err := s.inWriteTx(ctx, ch, func(tx *sql.Tx) (bool, error) {
		now := s.now().UnixMilli()
		if r.OldMustLive {
			if err := s.checkOldLive(ctx, tx, r.Old, r.OldVersion, now); err != nil {
				return false, err
			}
		}
		var generation, epoch int64
		if err := tx.StmtContext(ctx, s.rotateNewStmt).QueryRowContext(ctx, sql.Named("user", rec.UserID)).Scan(&generation, &epoch); err != nil {
			return false, err
		}
		if int64(rec.Epoch) < epoch {
			return false, fmt.Errorf("epoch %d is below the current %d: %w", rec.Epoch, epoch, cloakroom.ErrNotFound)
		}
		if rec.UserID != "" && uint64(generation) != rec.Generation {
			return false, fmt.Errorf("generation %d is not the user's current %d: %w", rec.Generation, generation, cloakroom.ErrNotFound)
		}
		if r.Bump {
			gen, err := s.bumpIn(ctx, tx, rec.UserID)
			if err != nil {
				return false, err
			}
			rec.Generation = uint64(gen)
		}
		if err := s.createIn(ctx, tx, rec, now); err != nil {
			return false, err
		}
		if r.Old != zero {
			var err error
			if oldDeleted, err = s.deleteIn(ctx, tx, r.Old); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return cloakroom.Record{}, fmt.Errorf("sqlitestore: rotate %s to %s: %w", r.Old.Short(), rec.Key.Short(), err)
	}
	if r.Bump {
		s.ends.Publish(cloakroom.End{UserID: rec.UserID, Generation: rec.Generation})
	}
	if oldDeleted {
		s.ends.Publish(cloakroom.End{Key: r.Old})
	}
	return rec, nil
}

// checkOldLive fails with ErrNotFound unless the session under key exists,
// is unexpired at nowMs, is of the current epoch and, for a user's
// session, is of the user's current generation, and with ErrConflict
// unless it is at version (when not 0).
func (s *Store) checkOldLive(ctx context.Context, tx *sql.Tx, key cloakroom.Key, version uint64, nowMs int64) error {
	var user sql.NullString
	var gen, current, stored, epoch, currentEpoch int64
	err := tx.StmtContext(ctx, s.rotateOldStmt).QueryRowContext(ctx, sql.Named("old", key[:]), sql.Named("now", nowMs)).Scan(&user, &gen, &stored, &current, &epoch, &currentEpoch)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("old session is gone: %w", cloakroom.ErrNotFound)
	case err != nil:
		return err
	case epoch != currentEpoch:
		return fmt.Errorf("old session's epoch %d revoked, the current one is %d: %w", epoch, currentEpoch, cloakroom.ErrNotFound)
	case user.Valid && gen != current:
		return fmt.Errorf("old session's generation %d revoked, user is at %d: %w", gen, current, cloakroom.ErrNotFound)
	case version != 0 && uint64(stored) != version:
		return fmt.Errorf("old session is at version %d, not %d: %w", stored, version, cloakroom.ErrConflict)
	}
	return nil
}

// createIn creates rec, version 1, in tx: ErrConflict if its key holds a
// live session, ErrNotFound if its generation is stale.
func (s *Store) createIn(ctx context.Context, tx *sql.Tx, rec cloakroom.Record, nowMs int64) error {
	blob, err := rec.MarshalBinary()
	if err != nil {
		return err
	}
	args := recordArgs(rec, blob, nowMs)
	return s.writeVersioned(ctx, tx, 1, s.createStmt, nil, args, func(args []any) error {
		return s.refusal(ctx, tx, rec, args)
	})
}

// commitVersioned is writeVersioned in a write transaction of its own,
// committed if the row was written; refusal reads in that transaction.
func (s *Store) commitVersioned(ctx context.Context, ch change, version uint64, create, update *sql.Stmt, args []any, refusal func(tx *sql.Tx, args []any) error) error {
	return s.inWriteTx(ctx, ch, func(tx *sql.Tx) (bool, error) {
		err := s.writeVersioned(ctx, tx, version, create, update, args, func(args []any) error {
			return refusal(tx, args)
		})
		return err == nil, err
	})
}

// writeVersioned writes one versioned row, a session or an auxiliary
// record, in tx: with create at version 1, else with update, a
// compare-and-set from version-1. Each takes args and changes one row or
// none; for none, refusal, given the arguments used, reads why.
func (s *Store) writeVersioned(ctx context.Context, tx *sql.Tx, version uint64, create, update *sql.Stmt, args []any, refusal func(args []any) error) error {
	stmt := create
	if version > 1 {
		stmt = update
		args = append(args, sql.Named("version", int64(version)), sql.Named("previous", int64(version-1)))
	}
	res, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	return refusal(args)
}

// Purge deletes the sessions and auxiliary records expired at the store's
// clock, and those a global revocation ([Store.BumpEpoch]) ended, and
// returns how many rows it deleted. It works in batches, each in its own
// transaction, and stops early, with ctx's error, when ctx is done. The
// background purge calls it every [Config.PurgeInterval].
func (s *Store) Purge(ctx context.Context) (int, error) {
	now := sql.Named("now", s.now().UnixMilli())
	// Purged sessions are dead, which the cache sees by itself; flushing
	// it anyway keeps it exact if the clock steps back. Auxiliary records
	// are never cached.
	sessions, err := s.purgeBatches(ctx, s.purgeStmt, change{all: true}, now)
	if err != nil {
		return sessions, fmt.Errorf("sqlitestore: purge: %w", err)
	}
	records, err := s.purgeBatches(ctx, s.purgeAuxStmt, change{}, now)
	if err != nil {
		return sessions + records, fmt.Errorf("sqlitestore: purge auxiliary records: %w", err)
	}
	return sessions + records, nil
}

// purgeBatches runs the purge statement stmt, which deletes up to :limit
// rows, until it deletes fewer, and returns the rows deleted.
func (s *Store) purgeBatches(ctx context.Context, stmt *sql.Stmt, ch change, now sql.NamedArg) (int, error) {
	total := 0
	for {
		var n int64
		err := s.inWriteTx(ctx, ch, func(tx *sql.Tx) (bool, error) {
			res, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, now, sql.Named("limit", purgeBatch))
			if err != nil {
				return false, err
			}
			n, err = res.RowsAffected()
			return n > 0, err
		})
		total += int(n)
		if err != nil || n < purgeBatch {
			return total, err
		}
	}
}

func (s *Store) purgeLoop(ctx context.Context, interval time.Duration) {
	defer close(s.purgeDone)
	purgeloop.Run(ctx, interval, s.Purge, func(err error) {
		s.logger.ErrorContext(ctx, "sqlitestore: background purge failed", "err", err)
	})
}

// Ping implements [cloakroom.Pinger]: it checks that both the read pool
// and the write connection answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlitestore: ping: %w", err)
	}
	if s.write != s.read {
		if err := s.write.PingContext(ctx); err != nil {
			return fmt.Errorf("sqlitestore: ping: %w", err)
		}
	}
	return nil
}

// Close stops the background purge and releases the database. A store made
// by New leaves the caller's *sql.DB open. Close is idempotent; the store
// must not be used after it.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.ends.Close() // no watcher reads the header after it is unmapped
		s.stopPurge()
		<-s.purgeDone
		s.closeStatements()
		for range s.nReaders {
			(<-s.readers).close()
		}
		if s.header != nil {
			s.header.close()
		}
		if s.anchor != nil {
			s.anchor.Close()
		}
		if s.owned {
			// Closing the last connection checkpoints the WAL into the
			// main file.
			s.closeErr = errors.Join(s.read.Close(), s.write.Close())
			if s.closeErr != nil {
				s.closeErr = fmt.Errorf("sqlitestore: close: %w", s.closeErr)
			}
		}
	})
	return s.closeErr
}

func (s *Store) closeStatements() {
	for _, stmt := range []*sql.Stmt{
		s.findStmt, s.listStmt, s.generationStmt, s.epochStmt, s.findAuxStmt,
		s.createStmt, s.updateStmt, s.commitStateStmt, s.deleteStmt,
		s.bumpStmt, s.dropRevokedStmt, s.bumpEpochStmt, s.purgeStmt,
		s.rotateOldStmt, s.rotateNewStmt,
		s.createAuxStmt, s.updateAuxStmt, s.auxStateStmt, s.deleteAuxStmt, s.purgeAuxStmt,
	} {
		if stmt != nil {
			stmt.Close()
		}
	}
}

// withWriteSlot runs fn while holding the store's write slot.
func (s *Store) withWriteSlot(ctx context.Context, fn func() error) error {
	select {
	case s.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSlot }()
	return fn()
}

// inWriteTx runs fn in a write transaction, committing if fn returns nil.
// fn reports whether it changed a row. ch names what the write may change,
// for the cache, which brackets the transaction (see cache.go).
func (s *Store) inWriteTx(ctx context.Context, ch change, fn func(*sql.Tx) (bool, error)) error {
	return s.withWriteSlot(ctx, func() error {
		if s.cache == nil {
			tx, err := s.write.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := fn(tx); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit()
		}
		// One connection from BEGIN to the data_version read after
		// COMMIT, which is what makes that reading mean something.
		conn, err := s.write.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		// The write lock is held from BEGIN IMMEDIATE: the version read
		// here is the one every other connection committed up to.
		v0, v0err := dataVersion(ctx, tx)
		before, beforeOK := s.cache.beginWrite(ch)
		wrote, err := fn(tx)
		if err != nil {
			tx.Rollback()
		} else {
			err = tx.Commit()
		}
		if s.testHookAfterCommit != nil {
			s.testHookAfterCommit()
		}
		s.cache.endWrite(ch, wrote && err == nil, before, beforeOK, func() bool {
			v1, v1err := dataVersion(ctx, conn)
			return v0err != nil || v1err != nil || v1 != v0
		})
		return err
	})
}

// dataVersion reads PRAGMA data_version on q's connection: a value that
// moves when another connection commits, and never for the connection's
// own commits.
func dataVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var v int64
	// Bookkeeping that takes microseconds: not cut short by a cancel,
	// which would only cost the cache a flush.
	err := q.QueryRowContext(context.WithoutCancel(ctx), "PRAGMA data_version").Scan(&v)
	return v, err
}

// createPrivate creates an empty file at path, readable and writable by its
// owner only, unless a file is there already. SQLite then opens it as a new
// database and gives its -wal and -shm files the same permissions, so
// session data is not readable by other local users.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// fileURI returns an SQLite URI for the absolute path with the query
// params. Characters that would end the path part are escaped.
func fileURI(path string, params url.Values) string {
	path = filepath.ToSlash(path)
	path = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	if !strings.HasPrefix(path, "/") { // a Windows drive letter
		path = "/" + path
	}
	return "file:" + path + "?" + params.Encode()
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// findStmtQuery is the find query with the store's table prefix.
func (s *Store) findStmtQuery() string { return withPrefix(s.prefix, findQuery) }
