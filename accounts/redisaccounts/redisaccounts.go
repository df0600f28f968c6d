// Package redisaccounts keeps the gateway's user accounts and its shared
// login throttle in Redis, next to redisstore's sessions: [Store] is an
// [accounts.Store], [Throttle] an [accounts.ThrottleStore] every gateway
// node on the server shares. Both use a rueidis client the caller owns and
// keep their keys in one Redis Cluster slot each, so every change is one
// atomic Lua script.
package redisaccounts

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/internal/codec"
)

// DefaultPrefix is the key prefix [New] and [NewThrottle] use when given
// "". It is redisstore's default too; the two never use the same keys.
const DefaultPrefix = "cloakroom:"

// redisListBatch bounds the HMGETs List sends in one pipeline.
const redisListBatch = 500

// Fields of a user's hash.
const (
	redisFieldName     = "name"
	redisFieldEmail    = "email"
	redisFieldRoles    = "roles"    // JSON array
	redisFieldDisabled = "disabled" // "0" or "1"
	redisFieldHash     = "hash"
	redisFieldCreated  = "created"  // Unix nanoseconds, 0 for the zero time
	redisFieldChanged  = "changed"  // same, for PasswordChangedAt
	redisFieldFactor   = "factor"   // Record.SecondFactor; absent for none
	redisFieldPasskeys = "passkeys" // Record.Passkeys; absent for none
)

// Store is an [accounts.Store] in Redis, through a rueidis client the caller
// owns (the gateway passes the session store's client).
//
// With the prefix P, each user is one hash P{accounts}:user:N, where N is
// the name folded by accounts.FoldName (an ASCII name's lower case), and
// the set P{accounts}:names holds every N. The shared hash tag keeps them
// in one Redis Cluster slot, so each change is one Lua script that checks
// and writes atomically; no WATCH. Reads never use the client-side cache:
// logins and admin calls are rare, and a password change must be seen at
// once by every node.
type Store struct {
	client     rueidis.Client
	userPrefix string // P{accounts}:user:
	namesKey   string // P{accounts}:names
}

// New returns a store on client under prefix (DefaultPrefix when ""),
// which must not contain '{' or '}'. The client is not closed by the store.
// Nothing is written until the first user is created.
func New(client rueidis.Client, prefix string) (*Store, error) {
	tagged, err := keyPrefix("New", client, prefix, "accounts")
	if err != nil {
		return nil, err
	}
	return &Store{
		client:     client,
		userPrefix: tagged + "user:",
		namesKey:   tagged + "names",
	}, nil
}

// keyPrefix checks the arguments of New and NewThrottle (fn) and returns
// the start of the store's keys: prefix (DefaultPrefix when ""), then the
// hash tag {tag} that keeps all of them in one cluster slot, then ":". A
// prefix with a brace would break that tag.
func keyPrefix(fn string, client rueidis.Client, prefix, tag string) (string, error) {
	if client == nil {
		return "", fmt.Errorf("redisaccounts: %s with a nil client", fn)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return "", fmt.Errorf("accounts: Redis prefix %q contains a brace, which would break the hash tag that keeps the %s keys in one cluster slot", prefix, tag)
	}
	return prefix + "{" + tag + "}:", nil
}

func (s *Store) userKey(name string) string { return s.userPrefix + accounts.FoldName(name) }

// redisCreateScript adds a user unless the name is taken.
//
// KEYS: user hash, names set. ARGV: folded name, then field/value pairs.
var redisCreateScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
`)

// redisUpdateScript changes fields of an existing user, if its password
// hash, its second factor and its passkeys still are the expected ones,
// and answers the user's fields afterwards, or 1 for no such user, 2 for a
// changed value.
//
// KEYS: user hash. ARGV: expected hash ("" for any), "1" to check the
// second factor or "0", the expected second factor ("" for none), "1" to
// check the passkeys or "0", the expected passkeys ("" for none), then
// field/value pairs.
var redisUpdateScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'hash') ~= ARGV[1] then return 2 end
if ARGV[2] == '1' and (redis.call('HGET', KEYS[1], 'factor') or '') ~= ARGV[3] then return 2 end
if ARGV[4] == '1' and (redis.call('HGET', KEYS[1], 'passkeys') or '') ~= ARGV[5] then return 2 end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
return redis.call('HMGET', KEYS[1], 'name', 'email', 'roles', 'disabled', 'created', 'changed')
`)

// redisDeleteScript removes a user and its name.
//
// KEYS: user hash, names set. ARGV: folded name.
var redisDeleteScript = rueidis.NewLuaScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
return 1
`)

// redisUserFields are the fields a User is decoded from, in order;
// redisRecordFields add the password hash.
var (
	redisUserFields   = []string{redisFieldName, redisFieldEmail, redisFieldRoles, redisFieldDisabled, redisFieldCreated, redisFieldChanged}
	redisRecordFields = []string{redisFieldName, redisFieldEmail, redisFieldRoles, redisFieldDisabled, redisFieldCreated, redisFieldChanged, redisFieldHash, redisFieldFactor, redisFieldPasskeys}
)

// Create implements [accounts.Store].
func (s *Store) Create(ctx context.Context, rec accounts.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	values, err := userToRedis(rec.User)
	if err != nil {
		return err
	}
	args := []string{accounts.FoldName(rec.Name), redisFieldHash, rec.PasswordHash, redisFieldFactor, rec.SecondFactor, redisFieldPasskeys, rec.Passkeys}
	for i, field := range redisUserFields {
		args = append(args, field, values[i])
	}
	created, err := redisCreateScript.Exec(ctx, s.client, []string{s.userKey(rec.Name), s.namesKey}, args).AsInt64()
	if err != nil {
		return fmt.Errorf("accounts: create user: %w", err)
	}
	if created == 0 {
		return fmt.Errorf("%w: %q", accounts.ErrUserExists, rec.Name)
	}
	return nil
}

// Get implements [accounts.Store].
func (s *Store) Get(ctx context.Context, name string) (accounts.Record, error) {
	if err := ctx.Err(); err != nil {
		return accounts.Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	fields, err := s.client.Do(ctx, s.client.B().Hmget().Key(s.userKey(name)).Field(redisRecordFields...).Build()).ToArray()
	if err != nil {
		return accounts.Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	if len(fields) != len(redisRecordFields) {
		return accounts.Record{}, fmt.Errorf("accounts: get user: HMGET answered %d values", len(fields))
	}
	if fields[0].IsNil() {
		return accounts.Record{}, accounts.ErrNoSuchUser
	}
	u, err := decodeRedisUser(fields[:len(redisUserFields)])
	if err != nil {
		return accounts.Record{}, fmt.Errorf("accounts: get user: %w", err)
	}
	hash, err := fields[len(redisUserFields)].ToString()
	if err != nil {
		return accounts.Record{}, fmt.Errorf("accounts: get user %q: password hash: %w", u.Name, err)
	}
	var factor string // absent in users written before second factors
	if f := fields[len(redisUserFields)+1]; !f.IsNil() {
		if factor, err = f.ToString(); err != nil {
			return accounts.Record{}, fmt.Errorf("accounts: get user %q: second factor: %w", u.Name, err)
		}
	}
	var passkeys string // absent in users written before passkeys
	if f := fields[len(redisUserFields)+2]; !f.IsNil() {
		if passkeys, err = f.ToString(); err != nil {
			return accounts.Record{}, fmt.Errorf("accounts: get user %q: passkeys: %w", u.Name, err)
		}
	}
	return accounts.Record{User: u, PasswordHash: hash, SecondFactor: factor, Passkeys: passkeys}, nil
}

// Update implements [accounts.Store].
func (s *Store) Update(ctx context.Context, name string, c accounts.Change) (accounts.User, error) {
	if err := ctx.Err(); err != nil {
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	args := []string{c.IfPasswordHash, "0", "", "0", ""}
	if c.IfSecondFactor != nil {
		args[1], args[2] = "1", *c.IfSecondFactor
	}
	if c.IfPasskeys != nil {
		args[3], args[4] = "1", *c.IfPasskeys
	}
	if c.SecondFactor != nil {
		args = append(args, redisFieldFactor, *c.SecondFactor)
	}
	if c.Passkeys != nil {
		args = append(args, redisFieldPasskeys, *c.Passkeys)
	}
	if c.PasswordHash != nil {
		args = append(args, redisFieldHash, *c.PasswordHash)
	}
	if c.PasswordChangedAt != nil {
		args = append(args, redisFieldChanged, strconv.FormatInt(codec.UnixNano(*c.PasswordChangedAt), 10))
	}
	if c.Roles != nil {
		roles, err := codec.EncodeRoles(*c.Roles)
		if err != nil {
			return accounts.User{}, err
		}
		args = append(args, redisFieldRoles, roles)
	}
	if c.Email != nil {
		args = append(args, redisFieldEmail, *c.Email)
	}
	if c.Disabled != nil {
		args = append(args, redisFieldDisabled, redisBool(*c.Disabled))
	}
	reply, err := redisUpdateScript.Exec(ctx, s.client, []string{s.userKey(name)}, args).ToMessage()
	if err != nil {
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	if code, err := reply.AsInt64(); err == nil {
		if code == 2 {
			return accounts.User{}, accounts.ErrConflict
		}
		return accounts.User{}, accounts.ErrNoSuchUser
	}
	fields, err := reply.ToArray()
	if err == nil && len(fields) != len(redisUserFields) {
		err = fmt.Errorf("script answered %d values", len(fields))
	}
	if err != nil {
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	u, err := decodeRedisUser(fields)
	if err != nil {
		return accounts.User{}, fmt.Errorf("accounts: update user: %w", err)
	}
	return u, nil
}

// Delete implements [accounts.Store].
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	deleted, err := redisDeleteScript.Exec(ctx, s.client, []string{s.userKey(name), s.namesKey}, []string{accounts.FoldName(name)}).AsInt64()
	if err != nil {
		return fmt.Errorf("accounts: delete user: %w", err)
	}
	if deleted == 0 {
		return accounts.ErrNoSuchUser
	}
	return nil
}

// List implements [accounts.Store]. It reads the names, then the users in
// pipelined batches; a user deleted in between is left out.
func (s *Store) List(ctx context.Context) ([]accounts.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	names, err := s.client.Do(ctx, s.client.B().Smembers().Key(s.namesKey).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	users := make([]accounts.User, 0, len(names))
	for batch := range slices.Chunk(names, redisListBatch) {
		cmds := make(rueidis.Commands, len(batch))
		for i, folded := range batch {
			cmds[i] = s.client.B().Hmget().Key(s.userPrefix + folded).Field(redisUserFields...).Build()
		}
		for i, res := range s.client.DoMulti(ctx, cmds...) {
			fields, err := res.ToArray()
			if err == nil && len(fields) != len(redisUserFields) {
				err = fmt.Errorf("HMGET answered %d values", len(fields))
			}
			if err != nil {
				return nil, fmt.Errorf("accounts: list users: %w", err)
			}
			if fields[0].IsNil() {
				continue // deleted since SMEMBERS
			}
			u, err := decodeRedisUser(fields)
			if err != nil {
				return nil, fmt.Errorf("accounts: list users: %s: %w", batch[i], err)
			}
			users = append(users, u)
		}
	}
	slices.SortFunc(users, func(a, b accounts.User) int { return cmp.Compare(accounts.FoldName(a.Name), accounts.FoldName(b.Name)) })
	return users, nil
}

// decodeRedisUser decodes the values of redisUserFields.
func decodeRedisUser(fields []rueidis.RedisMessage) (accounts.User, error) {
	if len(fields) != len(redisUserFields) {
		return accounts.User{}, fmt.Errorf("%d fields, want %d", len(fields), len(redisUserFields))
	}
	var values [6]string
	for i := range fields {
		v, err := fields[i].ToString()
		if err != nil {
			return accounts.User{}, fmt.Errorf("field %s: %w", redisUserFields[i], err)
		}
		values[i] = v
	}
	return userFromRedis(values)
}

// userFromRedis parses the values of redisUserFields, in order.
func userFromRedis(v [6]string) (accounts.User, error) {
	u := accounts.User{Name: v[0], Email: v[1]}
	if err := json.Unmarshal([]byte(v[2]), &u.Roles); err != nil {
		return accounts.User{}, fmt.Errorf("roles of %q: %w", u.Name, err)
	}
	u.Roles = codec.NonNilRoles(u.Roles)
	switch v[3] {
	case "0":
	case "1":
		u.Disabled = true
	default:
		return accounts.User{}, fmt.Errorf("disabled flag of %q is %q", u.Name, v[3])
	}
	created, err1 := strconv.ParseInt(v[4], 10, 64)
	changed, err2 := strconv.ParseInt(v[5], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return accounts.User{}, fmt.Errorf("times of %q: %w", u.Name, err)
	}
	u.CreatedAt, u.PasswordChangedAt = codec.FromUnixNano(created), codec.FromUnixNano(changed)
	return u, nil
}

// userToRedis is the inverse of userFromRedis.
func userToRedis(u accounts.User) ([6]string, error) {
	roles, err := codec.EncodeRoles(u.Roles)
	if err != nil {
		return [6]string{}, err
	}
	return [6]string{u.Name, u.Email, roles, redisBool(u.Disabled),
		strconv.FormatInt(codec.UnixNano(u.CreatedAt), 10), strconv.FormatInt(codec.UnixNano(u.PasswordChangedAt), 10)}, nil
}

func redisBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
