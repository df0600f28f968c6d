// Package seal encrypts small secrets (upstream tokens, OIDC tokens) that
// the gateway keeps at rest in its session store, with AES-256-GCM from the
// standard library.
//
// Keys come from a key file (see [Load] and [Parse]): one key per line,
// "<key id> <base64 of 32 random bytes>". The first key seals; every key
// opens. Each sealed string names the key that sealed it, so rotation is:
// put a new key on the first line, keep the old ones below it until every
// session sealed with them has expired, then remove them. A string sealed
// with a key that is no longer in the file fails to open with
// [ErrUnknownKey] (the caller treats the secret as gone).
//
// Associated data binds a sealed string to its purpose and owner (for
// example "vault:" plus the session's key hash): a sealed token copied into
// another session, or used for another purpose, does not open.
//
// A sealed string is "v1.<key id>.<base64url(nonce|ciphertext|tag)>", safe
// in JSON, cookies and URLs. Nonces are 96 random bits, so one key should
// seal fewer than 2^32 secrets: rotate well before that.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the length of every key: AES-256.
const KeySize = 32

// maxKeyIDLen bounds a key id; ids are short labels such as "2026-11".
const maxKeyIDLen = 32

const version = "v1"

var (
	// ErrKeyFile wraps every problem with a key file or its contents.
	ErrKeyFile = errors.New("seal: invalid key file")
	// ErrCannotOpen wraps every failure of [Keyring.Open].
	ErrCannotOpen = errors.New("seal: cannot open sealed value")
	// ErrMalformed: the string is not a sealed value of this format.
	ErrMalformed = errors.New("seal: malformed sealed value")
	// ErrUnknownKey: the value was sealed with a key not in the keyring
	// (retired by rotation, or from another deployment).
	ErrUnknownKey = errors.New("seal: unknown key id")
)

var payloadEncoding = base64.RawURLEncoding.Strict()

type key struct {
	id   string
	aead cipher.AEAD
}

// Keyring holds the keys of one key file. It is safe for concurrent use.
// Printing it shows the key ids only.
type Keyring struct {
	keys []key // keys[0] seals
}

// Load reads a key file. The file must not be readable by others (mode
// o-rwx): it holds the keys to every sealed token.
func Load(path string) (*Keyring, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if info.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%w: %s is accessible to other users (mode %v); chmod o-rwx it", ErrKeyFile, path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Parse reads key-file contents: one "<key id> <base64 key>" per line, the
// sealing key first. Blank lines and lines starting with '#' are ignored.
// Key ids are 1 to 32 characters of [A-Za-z0-9_-] and unique; keys are
// 32 bytes in standard base64 and distinct.
func Parse(data []byte) (*Keyring, error) {
	k := &Keyring{}
	seen := map[string]bool{}
	var raws [][]byte
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: line %d: want \"<key id> <base64 key>\"", ErrKeyFile, n+1)
		}
		id := fields[0]
		if !validKeyID(id) {
			return nil, fmt.Errorf("%w: line %d: key id must be 1-%d characters of A-Z a-z 0-9 _ -", ErrKeyFile, n+1, maxKeyIDLen)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: line %d: duplicate key id %q", ErrKeyFile, n+1, id)
		}
		seen[id] = true
		raw, err := base64.StdEncoding.DecodeString(fields[1])
		if err != nil || len(raw) != KeySize {
			// The decode error could quote key material: say only what is wrong.
			return nil, fmt.Errorf("%w: line %d: key %q is not %d bytes of standard base64", ErrKeyFile, n+1, id, KeySize)
		}
		for _, r := range raws {
			if bytes.Equal(r, raw) {
				return nil, fmt.Errorf("%w: line %d: key %q repeats an earlier key", ErrKeyFile, n+1, id)
			}
		}
		raws = append(raws, raw)
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
		}
		k.keys = append(k.keys, key{id: id, aead: aead})
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrKeyFile)
	}
	return k, nil
}

// Generate returns a keyring of one fresh random key under id, for a
// process that seals only what it opens itself (tests, the lab).
func Generate(id string) (*Keyring, error) {
	line, err := NewKeyLine(id)
	if err != nil {
		return nil, err
	}
	return Parse([]byte(line))
}

// NewKeyLine returns a key-file line holding a fresh random key under id,
// for tests and for `cloakroom`'s key generation.
func NewKeyLine(id string) (string, error) {
	if !validKeyID(id) {
		return "", fmt.Errorf("%w: key id must be 1-%d characters of A-Z a-z 0-9 _ -", ErrKeyFile, maxKeyIDLen)
	}
	raw := make([]byte, KeySize)
	rand.Read(raw) // never fails (crypto/rand)
	return id + " " + base64.StdEncoding.EncodeToString(raw), nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// KeyIDs lists the key ids, the sealing key first.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// String shows the key ids only, never key material.
func (k *Keyring) String() string { return "seal.Keyring" + fmt.Sprint(k.KeyIDs()) }

// GoString is String, so %#v does not print keys either.
func (k *Keyring) GoString() string { return k.String() }

// Seal encrypts plaintext with the first key, bound to aad: [Keyring.Open]
// succeeds only with the same aad.
func (k *Keyring) Seal(plaintext, aad []byte) string {
	key := k.keys[0]
	ct := key.aead.Seal(nil, nil, plaintext, boundAAD(key.id, aad))
	return version + "." + key.id + "." + payloadEncoding.EncodeToString(ct)
}

// Open decrypts a string made by Seal with a key of this keyring and the
// same aad. Every error wraps [ErrCannotOpen]; a malformed string also
// wraps [ErrMalformed], one sealed by a key not in the keyring
// [ErrUnknownKey].
func (k *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	ver, rest, ok1 := strings.Cut(sealed, ".")
	id, payload, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || ver != version || !validKeyID(id) {
		return nil, fmt.Errorf("%w: %w", ErrCannotOpen, ErrMalformed)
	}
	ct, err := payloadEncoding.DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCannotOpen, ErrMalformed)
	}
	for _, key := range k.keys {
		if key.id != id {
			continue
		}
		if len(ct) < key.aead.NonceSize()+key.aead.Overhead() {
			return nil, fmt.Errorf("%w: %w", ErrCannotOpen, ErrMalformed)
		}
		pt, err := key.aead.Open(nil, nil, ct, boundAAD(id, aad))
		if err != nil {
			return nil, fmt.Errorf("%w: authentication failed (wrong key or associated data, or tampered)", ErrCannotOpen)
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w: %w %q", ErrCannotOpen, ErrUnknownKey, id)
}

// boundAAD also binds the format version and key id, so a sealed string
// cannot be relabelled to another key id that happens to hold the same key.
func boundAAD(id string, aad []byte) []byte {
	b := make([]byte, 0, len(version)+len(id)+2+len(aad))
	b = append(b, version...)
	b = append(b, 0)
	b = append(b, id...)
	b = append(b, 0)
	return append(b, aad...)
}
