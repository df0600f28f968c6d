package accounts

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters. They are stored inside every encoded
// hash, so verifying never depends on the current defaults and the defaults
// can be raised later ([NeedsRehash]).
type Params struct {
	Memory     uint32 // KiB
	Time       uint32 // passes over memory
	Threads    uint8  // lanes (p)
	SaltLength uint32 // bytes
	KeyLength  uint32 // bytes
}

// DefaultParams returns the parameters new hashes use: m=19456 KiB (19 MiB),
// t=2, p=1, a 16-byte salt and a 32-byte key. These are the OWASP Password
// Storage Cheat Sheet's argon2id figures, also listed in ASVS 5.0 Appendix C
// (11.4.2). It is a function, not a variable, so no package can lower them.
func DefaultParams() Params {
	return Params{Memory: 19456, Time: 2, Threads: 1, SaltLength: 16, KeyLength: 32}
}

// Bounds on parameters accepted when hashing or parsing. The upper bounds
// stop a tampered stored hash from making one verification take gigabytes or
// minutes; they leave room to raise the defaults several times.
const (
	maxMemoryKiB  = 256 * 1024 // 256 MiB
	maxTime       = 32
	maxThreads    = 16
	minSaltLength = 8
	maxSaltLength = 64
	minKeyLength  = 16
	maxKeyLength  = 64
)

func (p Params) validate() error {
	switch {
	case p.Threads < 1 || p.Threads > maxThreads:
		return fmt.Errorf("%w: parallelism %d outside 1..%d", ErrInvalidHash, p.Threads, maxThreads)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB:
		return fmt.Errorf("%w: memory %d KiB outside %d..%d", ErrInvalidHash, p.Memory, 8*uint32(p.Threads), maxMemoryKiB)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("%w: iterations %d outside 1..%d", ErrInvalidHash, p.Time, maxTime)
	case p.SaltLength < minSaltLength || p.SaltLength > maxSaltLength:
		return fmt.Errorf("%w: salt length %d outside %d..%d", ErrInvalidHash, p.SaltLength, minSaltLength, maxSaltLength)
	case p.KeyLength < minKeyLength || p.KeyLength > maxKeyLength:
		return fmt.Errorf("%w: key length %d outside %d..%d", ErrInvalidHash, p.KeyLength, minKeyLength, maxKeyLength)
	}
	return nil
}

// Hash is a parsed argon2id hash.
type Hash struct {
	Params Params
	Salt   []byte
	Key    []byte
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
// Strict mode refuses non-zero trailing bits, so each hash has exactly one
// valid encoding.
var b64 = base64.RawStdEncoding.Strict()

// String encodes h in the PHC string format:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>.
func (h Hash) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, h.Params.Memory, h.Params.Time, h.Params.Threads,
		b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// Verify reports whether password derives h's key, comparing in constant
// time. It costs one argon2id computation with h's parameters.
func (h Hash) Verify(password string) bool {
	key := argon2.IDKey([]byte(password), h.Salt, h.Params.Time, h.Params.Memory, h.Params.Threads, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(key, h.Key) == 1
}

// HashPassword derives a new argon2id hash of password with a fresh random
// salt and returns it PHC-encoded. It does not validate the password (see
// [ValidatePassword]).
func HashPassword(password string, p Params) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLength)
	rand.Read(salt) // never fails (crypto/rand panics rather than return weak bytes)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLength)
	return Hash{Params: p, Salt: salt, Key: key}.String(), nil
}

// VerifyPassword parses encoded and reports whether password matches it.
// An error means encoded is not a valid hash; it is never a wrong password.
func VerifyPassword(encoded, password string) (bool, error) {
	h, err := ParseHash(encoded)
	if err != nil {
		return false, err
	}
	return h.Verify(password), nil
}

// NeedsRehash reports whether encoded was made with parameters other than p
// (or cannot be parsed), so the password should be hashed again with p the
// next time it is known, after a successful login.
func NeedsRehash(encoded string, p Params) bool {
	h, err := ParseHash(encoded)
	return err != nil || h.Params != p
}

// maxEncodedLength bounds the input ParseHash looks at: the longest valid
// string, with 10-digit numbers and the largest salt and key, is far shorter.
const maxEncodedLength = 256

// ParseHash parses a PHC-encoded argon2id hash strictly: the algorithm must
// be argon2id, the version 19, the parameters in the order m,t,p as plain
// decimals without leading zeros and within this package's bounds, the salt
// and key canonical unpadded base64. Anything else is ErrInvalidHash.
func ParseHash(encoded string) (Hash, error) {
	if len(encoded) > maxEncodedLength {
		return Hash{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidHash, maxEncodedLength)
	}
	// "$argon2id$v=19$m=..,t=..,p=..$salt$key" splits into six fields, the
	// first empty.
	fields := strings.Split(encoded, "$")
	if len(fields) != 6 || fields[0] != "" {
		return Hash{}, fmt.Errorf("%w: want $argon2id$v=19$m=..,t=..,p=..$salt$key", ErrInvalidHash)
	}
	if fields[1] != "argon2id" {
		return Hash{}, fmt.Errorf("%w: algorithm %q is not argon2id", ErrInvalidHash, truncate(fields[1], 16))
	}
	version, ok := strings.CutPrefix(fields[2], "v=")
	if !ok {
		return Hash{}, fmt.Errorf("%w: missing version", ErrInvalidHash)
	}
	if v, err := parseDecimal(version); err != nil || v != argon2.Version {
		return Hash{}, fmt.Errorf("%w: version must be %d", ErrInvalidHash, argon2.Version)
	}

	var h Hash
	params := strings.Split(fields[3], ",")
	if len(params) != 3 {
		return Hash{}, fmt.Errorf("%w: want parameters m=..,t=..,p=..", ErrInvalidHash)
	}
	var values [3]uint32
	for i, name := range [3]string{"m=", "t=", "p="} {
		digits, ok := strings.CutPrefix(params[i], name)
		if !ok {
			return Hash{}, fmt.Errorf("%w: parameter %d must start with %q", ErrInvalidHash, i+1, name)
		}
		v, err := parseDecimal(digits)
		if err != nil {
			return Hash{}, fmt.Errorf("%w: parameter %s%s", ErrInvalidHash, name, err)
		}
		values[i] = v
	}
	if values[2] > maxThreads {
		return Hash{}, fmt.Errorf("%w: parallelism %d above %d", ErrInvalidHash, values[2], maxThreads)
	}
	h.Params.Memory, h.Params.Time, h.Params.Threads = values[0], values[1], uint8(values[2])

	// The decoder skips '\r' and '\n'; allow only the alphabet.
	if !isBase64(fields[4]) || !isBase64(fields[5]) {
		return Hash{}, fmt.Errorf("%w: salt and key must be unpadded base64", ErrInvalidHash)
	}
	var err error
	if h.Salt, err = b64.DecodeString(fields[4]); err != nil {
		return Hash{}, fmt.Errorf("%w: salt is not unpadded base64", ErrInvalidHash)
	}
	if h.Key, err = b64.DecodeString(fields[5]); err != nil {
		return Hash{}, fmt.Errorf("%w: key is not unpadded base64", ErrInvalidHash)
	}
	h.Params.SaltLength, h.Params.KeyLength = uint32(len(h.Salt)), uint32(len(h.Key))
	if err := h.Params.validate(); err != nil {
		return Hash{}, err
	}
	return h, nil
}

// parseDecimal accepts 1 to 10 ASCII digits without a leading zero (other
// than "0" itself) that fit in a uint32: one spelling per number.
func parseDecimal(s string) (uint32, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a plain decimal", truncate(s, 12))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a plain decimal", truncate(s, 12))
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", truncate(s, 12))
	}
	return uint32(v), nil
}

func isBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
