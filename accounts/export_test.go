package accounts

import (
	"context"
	"time"
)

// Test-only hooks. They live in a _test.go file so production code cannot
// lower the hashing cost.

// WithHashParams makes a Service built from cfg hash with p instead of
// DefaultParams, to keep tests fast.
func WithHashParams(cfg Config, p Params) Config {
	cfg.hashParams = &p
	return cfg
}

// WithHashHook makes a Service built from cfg call f inside every hashing
// slot, before computing, so tests can count and hold hashes in flight.
func WithHashHook(cfg Config, f func()) Config {
	cfg.onHash = f
	return cfg
}

// Authenticate is Login from a browser without device tokens, the
// attempt most tests make.
func (s *Service) Authenticate(ctx context.Context, name, password, clientIP string) (User, error) {
	res, err := s.Login(ctx, LoginAttempt{Name: name, Password: password, ClientIP: clientIP})
	return res.User, err
}

// ClientKey exposes the throttling key of a client address.
var ClientKey = clientKey

// EncodeDeviceToken issues a device token for the account name whose
// password changed at generation.
func EncodeDeviceToken(key []byte, name string, generation time.Time, nonce []byte, issued time.Time) string {
	return encodeDeviceToken(key, deviceGrant{folded: FoldName(name), generation: generation}, nonce, issued)
}

// DeviceNonce checks a device token as Login does and returns its nonce.
func DeviceNonce(key []byte, name string, generation time.Time, token string, now time.Time, lifetime time.Duration) ([]byte, bool) {
	return deviceNonce(key, deviceGrant{folded: FoldName(name), generation: generation}, token, now, lifetime)
}

// IsCommonPassword reports whether lower is on the shipped list.
var IsCommonPassword = isCommon
