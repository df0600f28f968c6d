package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"time"
)

// Device tokens implement OWASP's device cookies: after a successful login
// the browser keeps a token naming the account, signed with the throttle
// store's device key. An attempt presenting a valid token for the account
// is throttled on that device's own failures only; attempts without one
// share the account's budget for unknown devices. An attacker who knows the
// name can exhaust that budget, but not the victim's known devices.
//
// A token is valid for [Config.DeviceTokenLifetime] after it was issued,
// and only while the account's password is the one it was issued under:
// the MAC covers the account's PasswordChangedAt, so a password change
// ends every token of the account at once, without a list to revoke.
const (
	deviceNonceLen  = 16
	deviceIssuedLen = 8 // Unix seconds, big-endian
	deviceMACLen    = 16
	deviceRawLen    = deviceNonceLen + deviceIssuedLen + deviceMACLen
	// MaxDeviceTokens is how many device tokens (accounts) one browser
	// keeps; the oldest is dropped beyond it.
	MaxDeviceTokens = 5
	// DefaultDeviceTokenLifetime is the default of
	// [Config.DeviceTokenLifetime].
	DefaultDeviceTokenLifetime = 90 * 24 * time.Hour
)

// deviceTokenLen is the base64url length of a token.
var deviceTokenLen = base64.RawURLEncoding.EncodedLen(deviceRawLen)

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

// deviceGrant is what a token is bound to: the account (its folded name)
// and its password generation (PasswordChangedAt, to the microsecond every
// store keeps).
type deviceGrant struct {
	folded     string
	generation time.Time
}

func grantOf(u User) deviceGrant {
	return deviceGrant{folded: FoldName(u.Name), generation: u.PasswordChangedAt}
}

func deviceMAC(key []byte, g deviceGrant, nonceAndIssued []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cloakroom device v2\x00"))
	m.Write([]byte(g.folded))
	m.Write([]byte{0})
	m.Write(binary.BigEndian.AppendUint64(nil, uint64(g.generation.UnixMicro())))
	m.Write(nonceAndIssued)
	return m.Sum(nil)[:deviceMACLen]
}

// newDeviceNonce is a new device's identity: its throttling key.
func newDeviceNonce() []byte {
	nonce := make([]byte, deviceNonceLen)
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	return nonce
}

func encodeDeviceToken(key []byte, g deviceGrant, nonce []byte, issued time.Time) string {
	raw := binary.BigEndian.AppendUint64(append([]byte(nil), nonce...), uint64(issued.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(raw, deviceMAC(key, g, raw)...))
}

// deviceToken is a decoded token, not yet checked.
type deviceToken struct {
	signed []byte // nonce and issue time, what the MAC covers with the grant
	nonce  []byte
	issued time.Time
	mac    []byte
}

// decodeDeviceToken splits a well-formed token; it checks nothing else.
func decodeDeviceToken(token string) (deviceToken, bool) {
	if len(token) != deviceTokenLen {
		return deviceToken{}, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) != deviceRawLen {
		return deviceToken{}, false
	}
	signed := raw[:deviceNonceLen+deviceIssuedLen]
	secs := binary.BigEndian.Uint64(signed[deviceNonceLen:])
	if secs > math.MaxInt64 {
		return deviceToken{}, false
	}
	return deviceToken{signed: signed, nonce: raw[:deviceNonceLen], issued: time.Unix(int64(secs), 0), mac: raw[len(signed):]}, true
}

// deviceNonce returns the nonce of token if it is a valid device token for
// the grant at now: signed for it, issued no later than now (a minute of
// clock skew between nodes allowed) and less than lifetime ago.
func deviceNonce(key []byte, g deviceGrant, token string, now time.Time, lifetime time.Duration) ([]byte, bool) {
	t, ok := decodeDeviceToken(token)
	if !ok || !hmac.Equal(t.mac, deviceMAC(key, g, t.signed)) {
		return nil, false
	}
	if t.issued.After(now.Add(time.Minute)) || !now.Before(t.issued.Add(lifetime)) {
		return nil, false
	}
	return t.nonce, true
}

// signedFor reports whether token is signed for the grant, whatever its
// issue time.
func signedFor(key []byte, g deviceGrant, token string) bool {
	t, ok := decodeDeviceToken(token)
	return ok && hmac.Equal(t.mac, deviceMAC(key, g, t.signed))
}

// keepDeviceToken reports whether a token of another account is worth
// keeping in the browser: well formed and not past lifetime by its
// (unchecked) issue time. Its owner's login checks it.
func keepDeviceToken(token string, now time.Time, lifetime time.Duration) bool {
	t, ok := decodeDeviceToken(token)
	return ok && now.Before(t.issued.Add(lifetime))
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
