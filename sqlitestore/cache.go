package sqlitestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/cloakroom/cloakroom"
)

// How the cache stays exact when other processes write the file.
//
// In WAL mode SQLite keeps a wal-index header at the start of the -shm
// file, shared by every connection of every process (the layout is
// documented in SQLite's walformat.html). Each commit rewrites it: its
// change counter grows by one and the frame count and checksums move. One
// pread of its 48 bytes tells whether anything committed since the last
// look, at a fraction of the cost of a query (or of PRAGMA data_version,
// which starts a read transaction and takes two file locks).
//
// The cache holds records valid at the header value known. A hit first
// reads the header; when it equals known, nothing has committed since the
// entries were read, so the cached answer is the answer a query would give
// at that instant. When it differs, someone wrote: the cache is flushed and
// known moves to the new value, unless the writer may be this store (see
// below), in which case the call reads the database without touching the
// cache.
//
// This store's own writes would otherwise flush the cache every time.
// Each one runs on a single connection W, inside BEGIN IMMEDIATE, so no
// other connection can commit while it runs: beginWrite compares the
// header with known (a difference is someone else's write: flush) and
// reads W's data_version. After COMMIT, endWrite reads the header, then
// W's data_version again. data_version does not move for W's own commit,
// so if it is unchanged nobody else committed between W's commit and the
// header read, and the header reflects this store's write alone: known
// takes its value and only the entries the write touched are dropped.
// Otherwise the cache is flushed.

// walHeaderSize is the size of the first copy of the wal-index header,
// which SQLite writes last when it commits.
const walHeaderSize = 48

type walHeader [walHeaderSize / 4]uint32

// walIndexVersion is the iVersion field of a wal-index header in the
// format this cache understands.
const walIndexVersion = 3007000

// headerFile reads the wal-index header of one database. The store keeps
// a connection of its own open for as long as it reads it: while any
// connection has the database open, SQLite neither deletes nor replaces
// the -shm file, so the file opened here stays the one every process
// writes.
type headerFile struct {
	f    *os.File
	path string
	view headerReader // a read-only mapping, or pread where there is none
}

type headerReader interface {
	read() (walHeader, error)
	close() error
}

func openHeader(dbPath string) (*headerFile, error) {
	path := dbPath + "-shm"
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	view, err := newHeaderView(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	h := &headerFile{f: f, path: path, view: view}
	hdr, err := h.read()
	if err == nil && hdr[0] != walIndexVersion {
		err = fmt.Errorf("wal-index version %d, want %d", hdr[0], walIndexVersion)
	}
	if err == nil && hdr[3]&0xff != 1 && hdr[3]>>24 != 1 { // isInit, either byte order
		err = errors.New("wal-index header not initialized")
	}
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

func (h *headerFile) read() (walHeader, error) { return h.view.read() }

// same reports whether the -shm file at the path is still the one read.
func (h *headerFile) same() bool {
	opened, err1 := h.f.Stat()
	current, err2 := os.Stat(h.path)
	return err1 == nil && err2 == nil && os.SameFile(opened, current)
}

func (h *headerFile) close() error {
	return errors.Join(h.view.close(), h.f.Close())
}

// preadView reads the header with one pread per call.
type preadView struct{ f *os.File }

func (v preadView) read() (walHeader, error) {
	var buf [walHeaderSize]byte
	var hdr walHeader
	n, err := v.f.ReadAt(buf[:], 0)
	if n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return hdr, err
	}
	for i := range hdr {
		hdr[i] = binary.NativeEndian.Uint32(buf[4*i:])
	}
	return hdr, nil
}

func (preadView) close() error { return nil }

// cachedRecord is a Find result with its expiry in the store's unit.
type cachedRecord struct {
	rec      cloakroom.Record
	expiryMs int64
}

// cache holds Find results of one Store; see the comment at the top of
// this file.
type cache struct {
	header *headerFile
	max    int

	// onForeignWrite is called, outside the lock, each time the cache
	// learns that another connection wrote the file.
	onForeignWrite func()
	// onBroken is called once, outside the lock, when the cache stops
	// serving for good.
	onBroken func(reason string)

	mu      sync.RWMutex
	known   walHeader
	valid   bool // known was read successfully and the cache may serve
	writing bool // between beginWrite and endWrite
	entries map[cloakroom.Key]cachedRecord

	// A miss reserves these before querying and may fill only if they
	// are unchanged: the row it read might predate a drop. drops covers
	// flushes and whole-user drops, stripes single keys.
	drops   uint64
	stripes [256]uint64

	// broken is set when the header cannot be trusted (see breakDown):
	// the cache then never serves again.
	broken bool
}

// fillToken is what a miss reserved; see cache.fill.
type fillToken struct {
	ok     bool
	header walHeader
	drops  uint64
	stripe uint64
}

func newCache(header *headerFile, max int) *cache {
	c := &cache{header: header, max: max, entries: make(map[cloakroom.Key]cachedRecord)}
	if hdr, err := header.read(); err == nil {
		c.known, c.valid = hdr, true
	}
	return c
}

// get returns the cached live record for key, or a token for filling the
// cache with what the caller then reads from the database.
func (c *cache) get(key cloakroom.Key, nowMs int64) (cloakroom.Record, bool, fillToken) {
	hdr, err := c.header.read()
	if err != nil {
		return cloakroom.Record{}, false, fillToken{}
	}
	c.mu.RLock()
	if c.valid && hdr == c.known {
		e, ok := c.entries[key]
		tok := fillToken{ok: true, header: hdr, drops: c.drops, stripe: c.stripes[key[0]]}
		c.mu.RUnlock()
		if ok && e.expiryMs > nowMs {
			return e.rec, true, fillToken{}
		}
		return cloakroom.Record{}, false, tok
	}
	writing := c.writing
	c.mu.RUnlock()
	if !writing {
		c.sync(hdr)
	}
	// While this store writes, a moved header may be its own commit, not
	// yet accounted for: read the database and leave the cache alone.
	return cloakroom.Record{}, false, fillToken{}
}

// sync flushes the cache if hdr shows a write it has not accounted for.
func (c *cache) sync(hdr walHeader) {
	c.mu.Lock()
	foreign := !c.writing && !c.broken && (!c.valid || hdr != c.known)
	if foreign {
		c.flushLocked()
		c.known, c.valid = hdr, true
	}
	c.mu.Unlock()
	if foreign && c.onForeignWrite != nil {
		c.onForeignWrite()
	}
}

// poll reads the header and flushes the cache if another connection wrote.
// It is how a store learns of other processes' writes when no request
// comes. It also checks that the -shm file was not replaced, which SQLite
// does not do while the store's anchor connection is open.
func (c *cache) poll() error {
	if !c.header.same() {
		c.breakDown("the -shm file was replaced")
		return nil
	}
	hdr, err := c.header.read()
	if err != nil {
		return err
	}
	c.sync(hdr)
	return nil
}

// breakDown stops the cache for good: its picture of the file can no
// longer be trusted. Every Find then reads the database.
func (c *cache) breakDown(reason string) {
	c.mu.Lock()
	first := !c.broken
	c.broken, c.valid = true, false
	c.flushLocked()
	c.mu.Unlock()
	if first {
		if c.onBroken != nil {
			c.onBroken(reason)
		}
		if c.onForeignWrite != nil {
			c.onForeignWrite()
		}
	}
}

// fill caches rec, read from the database at tok's header, if nothing
// was written or dropped since: the header still reads the same, and
// neither drops nor rec's stripe moved.
func (c *cache) fill(tok fillToken, rec cloakroom.Record) {
	if !tok.ok {
		return
	}
	hdr, err := c.header.read()
	if err != nil || hdr != tok.header {
		return
	}
	// Clipped so a caller appending to Data reallocates instead of
	// writing into the cache's array.
	rec.Data = slices.Clip(rec.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid || c.known != tok.header || c.drops != tok.drops || c.stripes[rec.Key[0]] != tok.stripe {
		return
	}
	if _, present := c.entries[rec.Key]; !present && len(c.entries) >= c.max {
		// Map iteration order serves as random eviction, which needs no
		// bookkeeping on the hit path.
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[rec.Key] = cachedRecord{rec: rec, expiryMs: rec.Expiry().UnixMilli()}
}

// change names what one write of this store may touch.
type change struct {
	keys []cloakroom.Key
	user string // every session of the user; "" for none
	all  bool   // anything (Purge, or a write whose extent is unknown)
}

// beginWrite is called inside this store's write transaction, after BEGIN
// IMMEDIATE: until endWrite no other connection can commit.
// It returns the header as it was before the write (ok false if it could
// not be read), for endWrite.
func (c *cache) beginWrite(ch change) (before walHeader, ok bool) {
	hdr, err := c.header.read()
	c.mu.Lock()
	foreign := err != nil || !c.valid || hdr != c.known
	c.writing = true
	// Unless foreign, hdr is the header known and the cache valid (so
	// not broken): settling then changes neither.
	c.settleLocked(hdr, err, foreign, ch)
	c.mu.Unlock()
	if foreign && c.onForeignWrite != nil {
		c.onForeignWrite()
	}
	return hdr, err == nil
}

// settleLocked is what beginWrite and endWrite do with the header they
// read, hdr (readErr if it could not be read): flush the cache if asked,
// take hdr as the header the cache is valid at, unless broken, and drop
// what the write, ch, may change. c.mu is held.
func (c *cache) settleLocked(hdr walHeader, readErr error, flush bool, ch change) {
	if flush {
		c.flushLocked()
	}
	c.known, c.valid = hdr, readErr == nil && !c.broken
	c.dropLocked(ch)
}

// endWrite is called after the write transaction ended, committed or
// not, with what beginWrite returned. othersCommitted reads the write
// connection's data_version and reports whether it moved since the
// transaction began (or could not tell); it runs after the header is read.
// committed says the transaction committed a change to a row, so the
// header must have moved.
func (c *cache) endWrite(ch change, committed bool, before walHeader, beforeOK bool, othersCommitted func() bool) {
	hdr, err := c.header.read()
	foreign := err != nil || othersCommitted()
	// A commit that did not show in the header means the file does not
	// behave as this cache assumes.
	stale := err == nil && beforeOK && committed && hdr == before
	c.mu.Lock()
	first := stale && !c.broken
	c.broken = c.broken || stale
	c.writing = false
	c.settleLocked(hdr, err, foreign || stale, ch)
	c.mu.Unlock()
	if first && c.onBroken != nil {
		c.onBroken("a commit did not change the wal-index header")
	}
	if (foreign || first) && c.onForeignWrite != nil {
		c.onForeignWrite()
	}
}

func (c *cache) flushLocked() {
	clear(c.entries)
	c.drops++
}

func (c *cache) dropLocked(ch change) {
	if ch.all {
		c.flushLocked()
		return
	}
	for _, k := range ch.keys {
		delete(c.entries, k)
		c.stripes[k[0]]++
	}
	if ch.user != "" {
		// Bumps are rare, so a scan costs less overall than an index
		// kept up on every fill.
		for k, e := range c.entries {
			if e.rec.UserID == ch.user {
				delete(c.entries, k)
			}
		}
		c.drops++
	}
}
