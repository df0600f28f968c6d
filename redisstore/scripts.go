package redisstore

import "github.com/redis/rueidis"

// Script results. Every write script answers with one of these codes (as
// an integer, or as the first element of an array).
const (
	codeOK       = 0
	codeConflict = 1 // the version or existence check failed
	codeGone     = 2 // the session was deleted, expired or revoked
	codeRevoked  = 3 // rec.Generation is below the user's generation
	codeForeign  = 4 // the key belongs to a session of another owner
	codeMoved    = 5 // the old session of a rotation is not at the version expected
	codeExpired  = 6 // the auxiliary record written would have expired already
)

// Results of claimScript.
const (
	claimTaken   = 0 // a live session of another owner holds the key
	claimCreated = 1 // a new pointer was written
	claimReused  = 2 // a pointer to this user was already there
)

// luaRecord reads the front of a compact record (see encodeCompact) that
// starts at byte o of s: the generation, the version, the expiry and the
// absolute deadline, both in Unix microseconds, and the epoch. Lua numbers
// are doubles, exact up to 2^53: microseconds since 1970 stay far below
// that.
//
// A script runs in one slot and cannot read the global epoch: the Store
// passes the epoch it trusts (see Store.currentEpoch), and the scripts
// treat a session below it as dead. That epoch may lag behind a bump that
// is still running; the Store checks again after the script.
const luaRecord = `
local function uvarint(s, i)
  local v, m = 0, 1
  while true do
    local b = string.byte(s, i)
    i = i + 1
    if b < 128 then return v + b * m, i end
    v = v + (b - 128) * m
    m = m * 128
  end
end
local function varint(s, i)
  local u
  u, i = uvarint(s, i)
  if u % 2 == 0 then return u / 2, i end
  return -(u + 1) / 2, i
end
local function record(s, o)
  local g, v, c, l, idle, a, i
  g, i = uvarint(s, o + 4)
  v, i = uvarint(s, i)
  c, i = varint(s, i)
  l, i = varint(s, i)
  idle, i = varint(s, i)
  a, i = varint(s, i)
  local flags, ep = string.byte(s, o + 1), 0
  if math.floor(flags / 8) % 2 == 1 then
    idle, a = idle * 1000000, a * 1000000
  end
  if math.floor(flags / 16) % 2 == 1 then ep = uvarint(s, i) end
  return g, v, c + math.min(l + idle, a), c + a, ep
end
`

// luaPrune drops dead sessions from a user's session hash: all of them
// when the hash is small, otherwise a random sample, so a create stays
// cheap however many sessions the user has; List and the TTL of the hash
// catch the rest.
const luaPrune = `
local function prune(k, now, gen, epoch)
  local all
  if redis.call('HLEN', k) <= 256 then
    all = redis.call('HGETALL', k)
  else
    all = redis.call('HRANDFIELD', k, 64, 'WITHVALUES')
  end
  for i = 1, #all, 2 do
    local g, v, e, a, ep = record(all[i + 1], 1)
    if g < gen or now >= e or ep < epoch then redis.call('HDEL', k, all[i]) end
  end
end
`

// luaVersion checks a write at version (an ARGV string, "1" for a create)
// over what is stored: live or not, at version v. It answers 0 when the
// write may go on, else the code to answer: codeConflict for a create over
// a live one or an update from another version, codeGone for an update of
// one that is not live.
const luaVersion = `
local function versionCode(version, live, v)
  if version == '1' then
    if live then return 1 end
  else
    if not live then return 2 end
    if v ~= tonumber(version) - 1 then return 1 end
  end
  return 0
end
`

// luaRevoke deletes every session of a user, appending to out the keys of
// the deleted sessions (field and the key's tail from the record), for the
// caller to remove their pointers.
const luaRevoke = `
local function revoke(sessions, tailLen, out)
  local all = redis.call('HGETALL', sessions)
  for i = 1, #all, 2 do out[#out + 1] = all[i] .. string.sub(all[i + 1], 3, 2 + tailLen) end
  redis.call('DEL', sessions)
end
`

// anonCommitScript creates or replaces an anonymous session, which lives
// whole in its pointer key as "a" followed by the record.
//
// KEYS: pointer. ARGV: version, value, now µs, ttl ms, epoch.
var anonCommitScript = rueidis.NewLuaScript(luaRecord + luaVersion + `
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, 1) ~= 'a' then
  if ARGV[1] == '1' then return 1 end
  return 4
end
local live, v = false, 0
if cur then
  local g, e, a, ep
  g, v, e, a, ep = record(cur, 2)
  live = tonumber(ARGV[3]) < e and ep >= tonumber(ARGV[5])
  if not live then redis.call('DEL', KEYS[1]) end
end
local code = versionCode(ARGV[1], live, v)
if code ~= 0 then return code end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
return 0
`)

// claimScript points a key at a user ("u" followed by the user ID) before
// that user's session is created. A pointer to the same user is reused; a
// live anonymous session or a pointer to anyone else keeps the key.
//
// KEYS: pointer. ARGV: user ID, ttl ms, now µs.
var claimScript = rueidis.NewLuaScript(luaRecord + `
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, 1) == 'u' then
    if string.sub(cur, 2) ~= ARGV[1] then return 0 end
    if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    return 2
  end
  local g, v, e = record(cur, 2)
  if tonumber(ARGV[3]) < e then return 0 end
end
redis.call('SET', KEYS[1], 'u' .. ARGV[1], 'PX', ARGV[2])
return 1
`)

// extendPointerScript lengthens a pointer's TTL, never shortens it, and
// never re-creates a pointer that a Delete or bump removed.
//
// KEYS: pointer. ARGV: user ID, ttl ms.
var extendPointerScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= 'u' .. ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`)

// dropPointerScript deletes a pointer only while it still names the given
// user, so cleanup never removes a key someone else claimed since.
//
// KEYS: pointer. ARGV: user ID.
var dropPointerScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == 'u' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// userCommitScript is the atomic heart of Commit for a user's session: the
// generation check, the version check and the write happen in one step in
// the user's hash slot. It also reports whether the absolute deadline grew,
// so the pointer's TTL must too. A create prunes dead sessions.
//
// KEYS: session hash, generation. ARGV: field, version, generation,
// record, now µs, ttl ms, absolute deadline µs, epoch.
var userCommitScript = rueidis.NewLuaScript(luaRecord + luaPrune + luaVersion + `
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) < gen then return {3, 0} end
local now, epoch = tonumber(ARGV[5]), tonumber(ARGV[8])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local live, v, abs = false, 0, 0
if cur then
  local g, e, ep
  g, v, e, abs, ep = record(cur, 1)
  live = g >= gen and now < e and ep >= epoch
  if not live then redis.call('HDEL', KEYS[1], ARGV[1]) end
end
local code = versionCode(ARGV[2], live, v)
if code ~= 0 then return {code, 0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[6]) then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
if ARGV[2] == '1' then prune(KEYS[1], now, gen, epoch) end
if live and tonumber(ARGV[7]) > abs then return {0, 1} end
return {0, 0}
`)

// unlinkTokenScript deletes an anonymous session outright, announcing it,
// and answers 1 (0 when there was none), or answers the owner of a user's
// session without touching the pointer: the session must go first, so
// that a pointer is never missing while its session lives.
//
// KEYS: pointer. ARGV: ends channel, end message.
var unlinkTokenScript = newScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if string.sub(cur, 1, 1) == 'u' then return string.sub(cur, 2) end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// userDeleteScript removes a user's session and announces it. It answers
// 1 if there was one, else 0.
//
// KEYS: session hash. ARGV: field, ends channel, end message.
var userDeleteScript = newScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`)

// listScript returns the user's generation, then field and record for
// each session that is neither expired nor revoked. It drops dead entries
// on the way.
//
// KEYS: session hash, generation. ARGV: now µs, epoch.
var listScript = rueidis.NewLuaScript(luaRecord + `
local graw = redis.call('GET', KEYS[2]) or '0'
local gen, now, epoch = tonumber(graw), tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {graw}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local g, v, e, a, ep = record(all[i + 1], 1)
  if g < gen or now >= e or ep < epoch then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
`)

// bumpScript increments the generation and deletes every session of the
// user in the same step, and announces the bump. It answers the new
// generation and the deleted session keys (field and the key's tail from
// the record), whose pointers the caller then removes.
//
// KEYS: generation, session hash. ARGV: ends channel, user ID, key tail
// length.
var bumpScript = newScript(luaRevoke + `
local g = redis.call('INCR', KEYS[1])
local out = {g}
revoke(KEYS[2], ARGV[3], out)
redis.call('PUBLISH', ARGV[1], 'g' .. g .. ':' .. ARGV[2])
return out
`)

// rotateScript is Rotate for a user's sessions, all in the user's slot:
// it checks the old session (when it must live: present, unexpired, at the
// user's current generation and not below the epoch given), checks the new session's generation and key,
// bumps the generation and deletes every session of the user (when asked),
// creates the new session and deletes the old one, announcing the ends.
// Either field may be empty: no old session, or nothing to create. A
// live old session must also be at the old version, unless that is "0".
// It answers a code, the user's generation after the step, whether the
// old session's end was announced (1 or 0), and, after a bump, the
// deleted session keys as bumpScript does.
//
// KEYS: session hash, generation. ARGV: old field, old must live ("1"),
// new field, new generation, bump ("1"), new record, now µs, ttl ms, ends
// channel, old end message, user ID, key tail length, old version, epoch.
var rotateScript = newScript(luaRecord + luaRevoke + `
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
local now, epoch = tonumber(ARGV[7]), tonumber(ARGV[14])
if ARGV[1] ~= '' then
  local live, v = false, 0
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  if cur then
    local g, e, a, ep
    g, v, e, a, ep = record(cur, 1)
    live = g == gen and now < e and ep >= epoch
  end
  if ARGV[2] == '1' and not live then return {2, gen} end
  if ARGV[2] == '1' and ARGV[13] ~= '0' and v ~= tonumber(ARGV[13]) then return {5, gen} end
end
if ARGV[3] ~= '' then
  if tonumber(ARGV[4]) ~= gen then return {3, gen} end
  local cur = redis.call('HGET', KEYS[1], ARGV[3])
  if cur then
    local g, v, e, a, ep = record(cur, 1)
    if g >= gen and now < e and ep >= epoch then return {1, gen} end
  end
end
local out = {0, gen, 0}
if ARGV[5] == '1' then
  gen = redis.call('INCR', KEYS[2])
  out[2] = gen
  revoke(KEYS[1], ARGV[12], out)
  redis.call('PUBLISH', ARGV[9], 'g' .. gen .. ':' .. ARGV[11])
end
if ARGV[1] ~= '' then
  if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 or ARGV[5] == '1' then
    redis.call('PUBLISH', ARGV[9], ARGV[10])
    out[3] = 1
  end
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[6])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[8]) then redis.call('PEXPIRE', KEYS[1], ARGV[8]) end
end
return out
`)

// consumeAnonymousScript deletes an anonymous session, announcing it, and
// with "must live" fails unless it was live (not below the epoch given
// either), and, leaving it alone, unless it is at the version given (when
// not "0").
//
// KEYS: pointer. ARGV: must live ("1"), now µs, ends channel, end message,
// version, epoch.
var consumeAnonymousScript = newScript(luaRecord + `
local cur = redis.call('GET', KEYS[1])
local live = false
if cur and string.sub(cur, 1, 1) == 'a' then
  local g, v, e, a, ep = record(cur, 2)
  live = tonumber(ARGV[2]) < e and ep >= tonumber(ARGV[6])
  if live and ARGV[1] == '1' and ARGV[5] ~= '0' and v ~= tonumber(ARGV[5]) then return 5 end
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
if ARGV[1] == '1' and not live then return 2 end
return 0
`)

// bumpEpochScript increments the global epoch and announces it ("e" and
// the new epoch) in the same step. It answers the new epoch.
//
// KEYS: epoch. ARGV: ends channel.
var bumpEpochScript = newScript(`
local e = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'e' .. e)
return e
`)

// epochHeartbeatScript publishes a heartbeat through the node that holds
// the epoch, carrying the epoch as that node has it when it runs the
// heartbeat (see watcher.heartbeat).
//
// KEYS: epoch. ARGV: ends channel, heartbeat message.
var epochHeartbeatScript = rueidis.NewLuaScript(`
redis.call('PUBLISH', ARGV[1], ARGV[2] .. (redis.call('GET', KEYS[1]) or '0'))
return 0
`)

// luaAux reads the front of an auxiliary record (see encodeAux): its
// version, its expiry in Unix microseconds, whether it ends with the
// sessions, and its epoch.
const luaAux = `
local function aux(s)
  local v, e, ep, i
  v, i = uvarint(s, 3)
  e, i = varint(s, i)
  ep, i = uvarint(s, i)
  return v, e, string.byte(s, 2) == 1, ep
end
`

// auxCommitScript creates or updates an auxiliary record with the version
// checks of Commit, then refuses one that would have expired already. A
// stored record that ends with the sessions and is below the epoch given
// is dead.
//
// KEYS: record. ARGV: version, value, now µs, ttl ms, epoch, expires µs.
var auxCommitScript = rueidis.NewLuaScript(luaRecord + luaAux + luaVersion + `
local cur = redis.call('GET', KEYS[1])
local live, v = false, 0
if cur then
  local e, bound, ep
  v, e, bound, ep = aux(cur)
  live = tonumber(ARGV[3]) < e and not (bound and ep < tonumber(ARGV[5]))
end
local code = versionCode(ARGV[1], live, v)
if code ~= 0 then return code end
if tonumber(ARGV[3]) >= tonumber(ARGV[6]) then return 6 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
return 0
`)
