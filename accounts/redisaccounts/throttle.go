package redisaccounts

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/accounts"
)

// Throttle is an [accounts.ThrottleStore] in Redis, shared by every gateway node
// on the same server. With the prefix P, each counter is a hash
// P{throttle}:KIND:KEY with fields f (failures), l (last failure) and u
// (blocked until), both in Unix milliseconds of the service's clock; it
// expires Window after its last failure. The device key is
// P{throttle}:device-key. One hash tag keeps all of them in one cluster
// slot, so Begin is one Lua script that checks and charges atomically.
type Throttle struct {
	client rueidis.Client
	prefix string // P{throttle}:
}

// NewThrottle returns a throttle store on client under prefix
// (DefaultPrefix when ""), which must not contain '{' or '}'. The
// client is not closed by the store.
func NewThrottle(client rueidis.Client, prefix string) (*Throttle, error) {
	tagged, err := keyPrefix("NewThrottle", client, prefix, "throttle")
	if err != nil {
		return nil, err
	}
	return &Throttle{client: client, prefix: tagged}, nil
}

func (s *Throttle) keyNames(keys []accounts.ThrottleKey) []string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = s.prefix + k.Kind + ":" + k.Key
	}
	return names
}

// ruleArgs encodes each key's rule as free, base, max, window (ms).
func ruleArgs(now time.Time, keys []accounts.ThrottleKey) []string {
	args := []string{strconv.FormatInt(now.UnixMilli(), 10)}
	for _, k := range keys {
		args = append(args,
			strconv.Itoa(k.Rule.FreeFailures),
			strconv.FormatInt(k.Rule.BaseDelay.Milliseconds(), 10),
			strconv.FormatInt(k.Rule.MaxDelay.Milliseconds(), 10),
			strconv.FormatInt(max(k.Rule.Window.Milliseconds(), 1), 10))
	}
	return args
}

// redisThrottleBegin returns the wait in ms (0: charged).
//
// KEYS: the counters. ARGV: now, then free, base, max, window per key.
var redisThrottleBegin = rueidis.NewLuaScript(`
local now = tonumber(ARGV[1])
local wait = 0
for i, k in ipairs(KEYS) do
  local u = tonumber(redis.call('HGET', k, 'u') or '0')
  if u - now > wait then wait = u - now end
end
if wait > 0 then return wait end
for i, k in ipairs(KEYS) do
  local o = 1 + (i - 1) * 4
  local free, base, maxd, win = tonumber(ARGV[o+1]), tonumber(ARGV[o+2]), tonumber(ARGV[o+3]), tonumber(ARGV[o+4])
  local v = redis.call('HMGET', k, 'f', 'l')
  local f, l = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if now - l > win then f = 0 end
  f = f + 1
  local u = 0
  if f >= free then
    local d = base
    local e = f - free
    while e > 0 and d < maxd do d = d * 2; e = e - 1 end
    if d > maxd then d = maxd end
    u = now + d
  end
  redis.call('HSET', k, 'f', f, 'l', now, 'u', u)
  redis.call('PEXPIRE', k, win)
end
return 0
`)

// redisThrottleRefund takes one failure back from each counter. Below the
// free budget the block goes; above it the block stays as it is (a
// refund never shortens a wait that other failures justify).
//
// KEYS: the counters. ARGV: now, then free, base, max, window per key.
var redisThrottleRefund = rueidis.NewLuaScript(`
for i, k in ipairs(KEYS) do
  local free = tonumber(ARGV[2 + (i - 1) * 4])
  local f = tonumber(redis.call('HGET', k, 'f') or '0') - 1
  if f <= 0 then
    redis.call('DEL', k)
  elseif f < free then
    redis.call('HSET', k, 'f', f, 'u', 0)
  else
    redis.call('HSET', k, 'f', f)
  end
end
return 0
`)

// Begin implements [accounts.ThrottleStore].
func (s *Throttle) Begin(ctx context.Context, now time.Time, keys []accounts.ThrottleKey) (time.Duration, error) {
	ms, err := redisThrottleBegin.Exec(ctx, s.client, s.keyNames(keys), ruleArgs(now, keys)).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("accounts: Redis throttle: %w", err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Refund implements [accounts.ThrottleStore].
func (s *Throttle) Refund(ctx context.Context, now time.Time, keys []accounts.ThrottleKey) error {
	if err := redisThrottleRefund.Exec(ctx, s.client, s.keyNames(keys), ruleArgs(now, keys)).Error(); err != nil {
		return fmt.Errorf("accounts: Redis throttle refund: %w", err)
	}
	return nil
}

// Reset implements [accounts.ThrottleStore].
func (s *Throttle) Reset(ctx context.Context, keys []accounts.ThrottleKey) error {
	if err := s.client.Do(ctx, s.client.B().Del().Key(s.keyNames(keys)...).Build()).Error(); err != nil {
		return fmt.Errorf("accounts: Redis throttle reset: %w", err)
	}
	return nil
}

// DeviceKey implements [accounts.ThrottleStore]: the first node to ask creates it.
func (s *Throttle) DeviceKey(ctx context.Context) ([]byte, error) {
	name := s.prefix + "device-key"
	if err := s.client.Do(ctx, s.client.B().Set().Key(name).Value(rand.Text()+rand.Text()).Nx().Build()).Error(); err != nil && !rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("accounts: Redis device key: %w", err)
	}
	key, err := s.client.Do(ctx, s.client.B().Get().Key(name).Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("accounts: Redis device key: %w", err)
	}
	return []byte(key), nil
}
