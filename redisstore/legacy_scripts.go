package redisstore

import "github.com/redis/rueidis"

// The scripts of the first key layout (see legacy.go), kept so that
// sessions written before the upgrade keep working until they expire.

// legacyLuaExpired compares expiry instants as (Unix seconds, nanoseconds) pairs:
// Lua numbers are doubles, too narrow for Unix nanoseconds, and comparing
// whole milliseconds would let Redis and Go disagree near the deadline.
const legacyLuaExpired = `
local function expired(es, en, ns, nn)
  es, en, ns, nn = tonumber(es), tonumber(en), tonumber(ns), tonumber(nn)
  return ns > es or (ns == es and nn >= en)
end
`

// legacyAnonCommitScript creates or replaces an anonymous session, which lives
// whole in its lookup key.
//
// KEYS: lookup key. ARGV: version, record, expiry s, expiry ns, now s,
// now ns, ttl ms.
var legacyAnonCommitScript = rueidis.NewLuaScript(legacyLuaExpired + `
local cur = redis.call('HMGET', KEYS[1], 'u', 'v', 'es', 'en')
if cur[1] then
  if ARGV[1] == '1' then return 1 end
  return 4
end
local live = cur[2] and not expired(cur[3], cur[4], ARGV[5], ARGV[6])
if cur[2] and not live then redis.call('DEL', KEYS[1]) end
if ARGV[1] == '1' then
  if live then return 1 end
else
  if not live then return 2 end
  if tonumber(cur[2]) ~= tonumber(ARGV[1]) - 1 then return 1 end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'es', ARGV[3], 'en', ARGV[4], 'r', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 0
`)

// legacyClaimScript points a lookup key at a user before that user's session is
// created. A leftover pointer to the same user is reused; a live session of
// anyone else keeps the key.
//
// KEYS: lookup key. ARGV: user ID, ttl ms, now s, now ns.
var legacyClaimScript = rueidis.NewLuaScript(legacyLuaExpired + `
local cur = redis.call('HMGET', KEYS[1], 'u', 'v', 'es', 'en')
if cur[1] then
  if cur[1] ~= ARGV[1] then return 0 end
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return 2
end
if cur[2] and not expired(cur[3], cur[4], ARGV[3], ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// legacyExtendPointerScript lengthens a lookup key's TTL, never shortens it, and
// never re-creates a pointer that a Delete or bump removed.
//
// KEYS: lookup key. ARGV: user ID, ttl ms.
var legacyExtendPointerScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// legacyDropPointerScript deletes a lookup key only while it still points at the
// given user, so cleanup never removes a key someone else claimed since.
//
// KEYS: lookup key. ARGV: user ID.
var legacyDropPointerScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], 'u') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// legacyUserCommitScript is the atomic heart of Commit for a user's session: the
// generation check, the version check, the write, the index entry and the
// TTLs happen in one step in the user's hash slot. It also reports whether
// the lookup key's TTL ("p", a Unix second by the store's clock) must grow
// to outlive the session.
//
// KEYS: session hash, generation, index. ARGV: version, generation, record,
// expiry s, expiry ns, now s, now ns, ttl ms, index member, index score,
// expiry s rounded up, new pointer deadline s.
var legacyUserCommitScript = rueidis.NewLuaScript(legacyLuaExpired + `
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) < gen then return {3, 0} end
local cur = redis.call('HMGET', KEYS[1], 'v', 'g', 'es', 'en', 'p')
local live = cur[1] and (tonumber(cur[2]) or 0) >= gen and not expired(cur[3], cur[4], ARGV[6], ARGV[7])
if cur[1] and not live then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[9])
end
if ARGV[1] == '1' then
  if live then return {1, 0} end
else
  if not live then return {2, 0} end
  if tonumber(cur[1]) ~= tonumber(ARGV[1]) - 1 then return {1, 0} end
end
local p, extend = cur[5], 0
if not live or not p or tonumber(p) < tonumber(ARGV[11]) then p, extend = ARGV[12], 1 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'g', ARGV[2], 'es', ARGV[4], 'en', ARGV[5], 'p', p, 'r', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[10], ARGV[9])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[8]) then redis.call('PEXPIRE', KEYS[3], ARGV[8]) end
return {0, extend}
`)

// legacyUnlinkTokenScript deletes an anonymous session outright and answers nil,
// or answers the owner of a user session without touching its pointer: the
// session data must go first, so an index never lists an unreachable one.
//
// KEYS: lookup key.
var legacyUnlinkTokenScript = rueidis.NewLuaScript(`
local u = redis.call('HGET', KEYS[1], 'u')
if u then return u end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// legacyUserDeleteScript removes a user's session and its index entry together.
//
// KEYS: session hash, index. ARGV: index member.
var legacyUserDeleteScript = rueidis.NewLuaScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)
