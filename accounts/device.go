package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync"
)

// Device tokens implement OWASP's device cookies: after a successful login
// the browser keeps a token naming the account, signed with the throttle
// store's device key. An attempt presenting a valid token for the account
// is throttled on that device's own failures only; attempts without one
// share the account's budget for unknown devices. An attacker who knows the
// name can exhaust that budget, but not the victim's known devices.
const (
	deviceNonceLen = 16
	deviceMACLen   = 16
	// MaxDeviceTokens is how many device tokens (accounts) one browser
	// keeps; the oldest is dropped beyond it.
	MaxDeviceTokens = 5
)

// deviceTokenLen is the base64url length of nonce and MAC.
var deviceTokenLen = base64.RawURLEncoding.EncodedLen(deviceNonceLen + deviceMACLen)

// keyring caches the store's device key once it has been read.
type keyring struct {
	mu  sync.Mutex
	key []byte
}

func (s *Service) deviceKey(ctx context.Context) ([]byte, error) {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	if s.keys.key != nil {
		return s.keys.key, nil
	}
	key, err := s.throttleStore.DeviceKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("accounts: device key: %w", err)
	}
	if len(key) < 32 {
		return nil, fmt.Errorf("accounts: device key is %d bytes, want 32", len(key))
	}
	s.keys.key = key
	return key, nil
}

func deviceMAC(key []byte, folded string, nonce []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cloakroom device v1\x00"))
	m.Write([]byte(folded))
	m.Write([]byte{0})
	m.Write(nonce)
	return m.Sum(nil)[:deviceMACLen]
}

func newDeviceToken(key []byte, folded string) string {
	nonce := make([]byte, deviceNonceLen)
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	return encodeDeviceToken(key, folded, nonce)
}

func encodeDeviceToken(key []byte, folded string, nonce []byte) string {
	return base64.RawURLEncoding.EncodeToString(append(nonce, deviceMAC(key, folded, nonce)...))
}

// deviceNonce returns the nonce of token if it is a valid device token for
// the folded name.
func deviceNonce(key []byte, folded, token string) (string, bool) {
	if len(token) != deviceTokenLen {
		return "", false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) != deviceNonceLen+deviceMACLen {
		return "", false
	}
	nonce, mac := raw[:deviceNonceLen], raw[deviceNonceLen:]
	if !hmac.Equal(mac, deviceMAC(key, folded, nonce)) {
		return "", false
	}
	return hex.EncodeToString(nonce), true
}

// wellFormedDeviceToken reports whether token could be a device token of
// some account; malformed ones are dropped from the browser's list.
func wellFormedDeviceToken(token string) bool {
	if len(token) != deviceTokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(token)
	return err == nil
}

// NameRef returns a keyed hash prefix of a user name, folded, for logs: it
// lets an operator correlate failed logins for one typed name without the
// log holding what was typed, which may be a mistyped password. It is ""
// if the key cannot be read.
func (s *Service) NameRef(ctx context.Context, name string) string {
	key, err := s.deviceKey(ctx)
	if err != nil {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cloakroom name ref v1\x00"))
	m.Write([]byte(FoldName(truncate(name, 256))))
	return hex.EncodeToString(m.Sum(nil)[:6])
}
