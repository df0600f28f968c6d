package redisstore

import (
	"sync"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

// Limits of the remembered sessions (see foundSessions). The budget bounds
// the memory they keep beyond rueidis' own cache; a record larger than
// maxRememberedRecord is decoded on every Find instead.
const (
	rememberedShardCount  = 16
	rememberedShardBudget = 2 << 20 // bytes per shard, so 32 MiB in all
	maxRememberedRecord   = 16 << 10
	rememberedOverhead    = 512 // estimated bytes of an entry besides the records
)

// foundSession is what Find remembers about a session it found, so the next
// Find of the same key can skip the lookup pointer, building key names and
// commands, and decoding. Entries are never modified; a change stores a new
// one.
//
// Nothing in an entry is trusted on its own. The owner is safe to reuse
// because a live session of user U under a key implies the key is U's (the
// lookup pointer is claimed before the session is written and outlives
// it); when the remembered session is gone, Find does the full lookup. The
// decoded record is reused only when Redis, or the client-side cache Redis
// invalidates, answers with exactly the bytes it was decoded from.
type foundSession struct {
	userID string
	// read fetches the record: HMGET of the lookup hash (fields u and r)
	// for an anonymous session, HGET of the session hash's r for a user's.
	// It is pinned, so rueidis never recycles it and every Find reuses it.
	read rueidis.Cacheable
	// generation is the pinned GET of the user's generation counter.
	generation rueidis.Cacheable
	blob       string           // the stored record
	rec        cloakroom.Record // decoded from blob; Data clipped so appends copy
}

func (e *foundSession) size() int { return 2*len(e.blob) + rememberedOverhead }

// foundSessions is a bounded map of foundSession by session key. When a
// shard is over its byte budget it forgets arbitrary entries: a forgotten
// session costs the next Find one pointer read and a decode, nothing more.
type foundSessions struct {
	shard [rememberedShardCount]foundShard
}

type foundShard struct {
	mu      sync.RWMutex
	entries map[cloakroom.Key]*foundSession
	bytes   int
}

func newFoundSessions() *foundSessions {
	f := &foundSessions{}
	for i := range f.shard {
		f.shard[i].entries = make(map[cloakroom.Key]*foundSession)
	}
	return f
}

func (f *foundSessions) shardFor(key cloakroom.Key) *foundShard {
	// Keys are SHA-256 hashes: any byte is uniform.
	return &f.shard[key[1]%rememberedShardCount]
}

func (f *foundSessions) get(key cloakroom.Key) *foundSession {
	sh := f.shardFor(key)
	sh.mu.RLock()
	e := sh.entries[key]
	sh.mu.RUnlock()
	return e
}

// put remembers e under key, replacing any previous entry.
func (f *foundSessions) put(key cloakroom.Key, e *foundSession) {
	if len(e.blob) > maxRememberedRecord {
		f.forget(key)
		return
	}
	sh := f.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.entries[key]; ok {
		sh.bytes -= old.size()
	}
	sh.entries[key] = e
	sh.bytes += e.size()
	for k, victim := range sh.entries { // map order is unspecified, which is random enough
		if sh.bytes <= rememberedShardBudget {
			break
		}
		if k != key {
			delete(sh.entries, k)
			sh.bytes -= victim.size()
		}
	}
}

func (f *foundSessions) forget(key cloakroom.Key) {
	sh := f.shardFor(key)
	sh.mu.Lock()
	if old, ok := sh.entries[key]; ok {
		delete(sh.entries, key)
		sh.bytes -= old.size()
	}
	sh.mu.Unlock()
}
