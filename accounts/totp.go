package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"slices"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// A local account's second factor is a TOTP secret (RFC 6238: HMAC-SHA1,
// six digits, 30-second steps, the parameters every authenticator app
// reads) and a set of single-use recovery codes. The secret is sealed at
// rest with [Config.Sealer]; the recovery codes are kept as hashes.
const (
	// TOTPPeriod is the length of one time step.
	TOTPPeriod = 30 * time.Second
	// TOTPSkew is how many steps a code may be off either way: one, for
	// clocks that drift and codes typed as they change.
	TOTPSkew = 1
	// RecoveryCodeCount is how many recovery codes an enrolment issues.
	RecoveryCodeCount = 10
	// TOTPEnrolmentLifetime is how long an enrolment may wait for its
	// confirming code.
	TOTPEnrolmentLifetime = 10 * time.Minute

	totpSecretBytes = 20 // 160 bits, RFC 4226's recommended length
	// recoveryCodeChars of Crockford's base32 (5 bits each): 120 bits,
	// above the 112 that ASVS 6.5.2 asks of a secret kept under a fast
	// hash.
	recoveryCodeChars = 24
	recoveryAlphabet  = "0123456789abcdefghjkmnpqrstvwxyz"
	factorVersion     = 1
)

// SecondFactorRequiredError is Login's answer for a right password on an
// account with a second factor: an authenticator app or a passkey. errors.Is(err, ErrSecondFactorRequired)
// holds.
type SecondFactorRequiredError struct {
	// User is the account; its PasswordChangedAt goes into the
	// [SecondFactorAttempt], so a password change in between ends it.
	User User
	// Factor names the factor the code must come from; it goes into the
	// SecondFactorAttempt too, so a factor reset (and enrolled again) in
	// between ends the attempt. "" when the account has passkeys only.
	Factor string
	// Factors is what the account can finish the sign-in with, for the
	// page between the factors to offer.
	Factors SignInFactors
}

func (e *SecondFactorRequiredError) Error() string { return ErrSecondFactorRequired.Error() }

// Unwrap makes errors.Is(err, ErrSecondFactorRequired) true.
func (e *SecondFactorRequiredError) Unwrap() error { return ErrSecondFactorRequired }

// Sealer encrypts TOTP secrets at rest; *seal.Keyring (internal/seal) is
// one. Open must fail for a value sealed with other associated data.
type Sealer interface {
	Seal(plaintext, aad []byte) string
	Open(sealed string, aad []byte) ([]byte, error)
}

// storedFactor is Record.SecondFactor, JSON-encoded.
type storedFactor struct {
	V int `json:"v"`
	// Secret is the base32 TOTP secret, sealed for this account.
	Secret string `json:"secret"`
	// Since is when the factor was enabled, Unix seconds.
	Since int64 `json:"since"`
	// Step is the last time step a code was accepted for: only later
	// steps are accepted, so each code works once.
	Step int64 `json:"step"`
	// Recovery holds the hex SHA-256 of each unused recovery code.
	Recovery []string `json:"recovery"`
}

func decodeFactor(s string) (storedFactor, error) {
	var f storedFactor
	if err := json.Unmarshal([]byte(s), &f); err != nil || f.V != factorVersion || f.Secret == "" {
		return storedFactor{}, fmt.Errorf("accounts: stored second factor unreadable (version %d)", f.V)
	}
	return f, nil
}

// id names this enrolment of the factor, never revealing it: a hash of
// the sealed secret, whose random nonce differs at every enrolment.
func (f storedFactor) id() string {
	sum := sha256.Sum256([]byte("cloakroom second factor id v1\x00" + f.Secret))
	return hex.EncodeToString(sum[:16])
}

// factorID is the id of the factor a record holds, "" for none or an
// unreadable one.
func factorID(stored string) string {
	if stored == "" {
		return ""
	}
	f, err := decodeFactor(stored)
	if err != nil {
		return ""
	}
	return f.id()
}

func (f storedFactor) encode() string {
	b, _ := json.Marshal(f) // plain fields: never fails
	return string(b)
}

func secretAAD(name string) []byte { return []byte("accounts totp secret v1\x00" + FoldName(name)) }
func enrolmentAAD(name string) []byte {
	return []byte("accounts totp enrolment v1\x00" + FoldName(name))
}

// TOTPEnrolment is a TOTP secret offered to a user and not yet confirmed.
// Secret and URI are for the user's eyes only (the enrolment page); the
// caller keeps Sealed, and nothing else, until the confirming code comes.
type TOTPEnrolment struct {
	Secret string // base32, to type into an authenticator app
	URI    string // otpauth://totp/..., what the QR code holds
	// Sealed is the secret and the enrolment's expiry, sealed for the
	// account: pass it to [Service.ConfirmTOTP] or
	// [Service.OpenTOTPEnrolment].
	Sealed  string
	Expires time.Time
	key     *otp.Key
}

// QR returns the URI as a QR code image of size×size pixels, to show to
// the user's authenticator app.
func (e TOTPEnrolment) QR(size int) (image.Image, error) {
	if e.key == nil {
		return nil, errors.New("accounts: enrolment without a key")
	}
	return e.key.Image(size, size)
}

// enrolmentSeal is what TOTPEnrolment.Sealed holds.
type enrolmentSeal struct {
	URI     string `json:"uri"`
	Expires int64  `json:"exp"` // Unix seconds
}

func (s *Service) issuer() string {
	if s.cfg.Issuer != "" {
		return s.cfg.Issuer
	}
	return "cloakroom"
}

// BeginTOTP starts enrolling a TOTP factor for name: a new random secret,
// returned for display and sealed for [Service.ConfirmTOTP]. Nothing is
// stored. The caller must have checked that the user signed in recently.
// It fails with ErrNoSealer without a key, ErrAlreadyEnrolled when the
// account has a factor, ErrNoSuchUser.
func (s *Service) BeginTOTP(ctx context.Context, name string) (TOTPEnrolment, error) {
	if s.cfg.Sealer == nil {
		return TOTPEnrolment{}, ErrNoSealer
	}
	if err := ValidateName(name); err != nil {
		return TOTPEnrolment{}, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return TOTPEnrolment{}, err
	}
	if rec.SecondFactor != "" {
		return TOTPEnrolment{}, ErrAlreadyEnrolled
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: s.issuer(), AccountName: rec.Name, Period: uint(TOTPPeriod / time.Second),
		SecretSize: totpSecretBytes, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Rand: rand.Reader,
	})
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("accounts: generate TOTP secret: %w", err)
	}
	expires := s.now().Add(TOTPEnrolmentLifetime).Truncate(time.Second)
	b, _ := json.Marshal(enrolmentSeal{URI: key.URL(), Expires: expires.Unix()})
	sealed := s.cfg.Sealer.Seal(b, enrolmentAAD(rec.Name))
	return TOTPEnrolment{Secret: key.Secret(), URI: key.URL(), Sealed: sealed, Expires: expires, key: key}, nil
}

// OpenTOTPEnrolment reopens an enrolment of name from its Sealed form, to
// show it again (its QR code). It fails with ErrEnrolmentExpired past its
// expiry or for another account's.
func (s *Service) OpenTOTPEnrolment(name, sealed string) (TOTPEnrolment, error) {
	if s.cfg.Sealer == nil {
		return TOTPEnrolment{}, ErrNoSealer
	}
	b, err := s.cfg.Sealer.Open(sealed, enrolmentAAD(name))
	if err != nil {
		return TOTPEnrolment{}, ErrEnrolmentExpired
	}
	var e enrolmentSeal
	if err := json.Unmarshal(b, &e); err != nil {
		return TOTPEnrolment{}, ErrEnrolmentExpired
	}
	expires := time.Unix(e.Expires, 0)
	if !s.now().Before(expires) {
		return TOTPEnrolment{}, ErrEnrolmentExpired
	}
	key, err := otp.NewKeyFromURL(e.URI)
	if err != nil {
		return TOTPEnrolment{}, ErrEnrolmentExpired
	}
	return TOTPEnrolment{Secret: key.Secret(), URI: e.URI, Sealed: sealed, Expires: expires, key: key}, nil
}

// ConfirmTOTP enables the enrolment sealed for name once the user proves
// their app has the secret with a valid code, and returns the recovery
// codes, to be shown once: only their hashes are kept. It fails with
// ErrInvalidCode, ErrEnrolmentExpired, ErrAlreadyEnrolled (a factor was
// enabled meanwhile), ErrNoSuchUser.
func (s *Service) ConfirmTOTP(ctx context.Context, name, sealed, code string) ([]string, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	e, err := s.OpenTOTPEnrolment(name, sealed)
	if err != nil {
		return nil, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if rec.SecondFactor != "" {
		return nil, ErrAlreadyEnrolled
	}
	step, ok := matchTOTP(e.Secret, normalizeCode(code), s.now(), -1)
	if !ok {
		return nil, ErrInvalidCode
	}
	codes := make([]string, RecoveryCodeCount)
	hashes := make([]string, RecoveryCodeCount)
	for i := range codes {
		codes[i] = newRecoveryCode()
		hashes[i] = recoveryHash(rec.Name, normalizeCode(codes[i]))
	}
	f := storedFactor{
		V: factorVersion, Secret: s.cfg.Sealer.Seal([]byte(e.Secret), secretAAD(rec.Name)),
		Since: s.now().Unix(), Step: step, Recovery: hashes,
	}
	encoded := f.encode()
	// Only if the account still has none: two confirmations racing enable
	// one factor.
	_, err = s.store.Update(ctx, rec.Name, Change{SecondFactor: &encoded, IfSecondFactor: ptr("")})
	if errors.Is(err, ErrConflict) {
		return nil, ErrAlreadyEnrolled
	}
	if err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "accounts: second factor enabled", "user", rec.Name, "factor", "totp", "recovery_codes", len(codes))
	return codes, nil
}

// SignInFactors is what an account has besides its password that a
// sign-in can be finished with. An account with any of them (Any) signs
// in with one of them after its password: [Service.Login] answers
// ErrSecondFactorRequired, and a session of that account signed in with
// the password alone is a session of before the factor.
type SignInFactors struct {
	// TOTP: an authenticator app, whose codes the step takes.
	TOTP bool
	// RecoveryCodes is how many unused recovery codes the app's
	// enrolment left.
	RecoveryCodes int
	// Passkeys is how many passkeys the account has, counted only while
	// passkeys are on (a relying party configured): with them off, a
	// stored passkey cannot be used, and must not hold the account at a
	// step it cannot pass.
	Passkeys int
}

// Any reports whether the account has a second factor.
func (f SignInFactors) Any() bool { return f.TOTP || f.Passkeys > 0 }

// signInFactors is the one rule of which factors rec has. A stored value
// that does not decode still counts (the step then fails, and an
// administrator's factor reset is the way out): an unreadable factor must
// not turn into a password-only account.
func (s *Service) signInFactors(rec Record) SignInFactors {
	var f SignInFactors
	if rec.SecondFactor != "" {
		f.TOTP = true
		if stored, err := decodeFactor(rec.SecondFactor); err == nil {
			f.RecoveryCodes = len(stored.Recovery)
		}
	}
	if s.webauthn != nil && rec.Passkeys != "" {
		f.Passkeys = 1
		if keys, err := decodePasskeys(rec.Passkeys); err == nil {
			f.Passkeys = len(keys.Keys)
		}
	}
	return f
}

// SignInFactors tells what name can finish a sign-in with after its
// password ([SignInFactors]).
func (s *Service) SignInFactors(ctx context.Context, name string) (SignInFactors, error) {
	if err := ValidateName(name); err != nil {
		return SignInFactors{}, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return SignInFactors{}, err
	}
	return s.signInFactors(rec), nil
}

// SecondFactorInfo describes an account's second factor, never its
// secrets.
type SecondFactorInfo struct {
	TOTP              bool      `json:"totp"`
	Since             time.Time `json:"since,omitzero"`
	RecoveryCodesLeft int       `json:"recovery_codes_left"`
}

// SecondFactors tells which second factor name has.
func (s *Service) SecondFactors(ctx context.Context, name string) (SecondFactorInfo, error) {
	if err := ValidateName(name); err != nil {
		return SecondFactorInfo{}, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil || rec.SecondFactor == "" {
		return SecondFactorInfo{}, err
	}
	f, err := decodeFactor(rec.SecondFactor)
	if err != nil {
		return SecondFactorInfo{}, err
	}
	return SecondFactorInfo{TOTP: true, Since: time.Unix(f.Since, 0).UTC(), RecoveryCodesLeft: len(f.Recovery)}, nil
}

// ResetSecondFactor removes name's second factor and recovery codes (a
// lost phone); the user signs in with the password alone, and may enrol
// again. It ends no session, but every sign-in waiting for a code of the
// removed factor fails (see [SecondFactorAttempt.Factor]). It reports
// whether there was one.
func (s *Service) ResetSecondFactor(ctx context.Context, name string) (bool, error) {
	if err := ValidateName(name); err != nil {
		return false, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil || rec.SecondFactor == "" {
		return false, err
	}
	if _, err := s.update(ctx, rec.Name, Change{SecondFactor: ptr("")}, "accounts: second factor reset"); err != nil {
		return false, err
	}
	return true, nil
}

// SecondFactorAttempt is the second step of a login, after
// [Service.Login] answered ErrSecondFactorRequired.
type SecondFactorAttempt struct {
	Name string
	// Code is a six-digit TOTP code or a recovery code.
	Code     string
	ClientIP string
	Devices  []string
	// PasswordChangedAt is the User.PasswordChangedAt of the
	// SecondFactorRequiredError: if the password changed since it was
	// checked, the attempt fails.
	PasswordChangedAt time.Time
	// Factor is the SecondFactorRequiredError's Factor: the attempt fails
	// unless the account still has that factor (not reset, nor reset and
	// enrolled again). Required.
	Factor string
}

// VerifySecondFactor completes a login whose password was right. The code
// is throttled exactly as passwords are, on the same counters: a known
// device (a valid device token for the account) on its own failures,
// other devices on the account's and the client's. A wrong, replayed or
// out-of-window code is ErrInvalidCode; an account that changed since the
// password check (disabled, deleted, new password, factor reset) is
// ErrInvalidCredentials; too many failures a *ThrottledError. A TOTP code
// is accepted for the current step and one step either way, and only for
// a step later than the last one accepted; a recovery code once. Both are
// recorded with one compare-and-swap of the stored factor, so of two
// logins racing with one code only one succeeds.
func (s *Service) VerifySecondFactor(ctx context.Context, a SecondFactorAttempt) (LoginResult, error) {
	if ValidateName(a.Name) != nil {
		return LoginResult{}, ErrInvalidCredentials
	}
	if s.cfg.Sealer == nil {
		return LoginResult{}, ErrNoSealer
	}
	key, err := s.deviceKey(ctx)
	if err != nil {
		return LoginResult{}, err
	}
	rec, err := s.store.Get(ctx, a.Name)
	if errors.Is(err, ErrNoSuchUser) {
		return LoginResult{}, ErrInvalidCredentials
	}
	if err != nil {
		return LoginResult{}, err
	}
	now := s.now()
	device, keys := s.throttleKeys(key, rec, a.ClientIP, a.Devices, now)
	wait, err := s.throttleStore.Begin(ctx, now, keys)
	if err != nil {
		return LoginResult{}, fmt.Errorf("accounts: throttle: %w", err)
	}
	ip := clientKey(a.ClientIP)
	if wait > 0 {
		s.logger.WarnContext(ctx, "accounts: second factor throttled", "user", rec.Name, "client", ip, "known_device", device != nil, "retry_after", wait)
		return LoginResult{}, &ThrottledError{RetryAfter: wait}
	}
	used, left, err := s.useCode(ctx, rec, a, now)
	if err != nil {
		if !errors.Is(err, ErrInvalidCode) && !errors.Is(err, ErrInvalidCredentials) {
			// No verdict: take back the failure charged.
			if err := s.throttleStore.Refund(context.WithoutCancel(ctx), s.now(), keys); err != nil {
				s.logger.WarnContext(ctx, "accounts: throttle refund failed", "err", err)
			}
		}
		s.logger.InfoContext(ctx, "accounts: second factor failed", "user", rec.Name, "reason", err.Error(), "client", ip, "known_device", device != nil)
		return LoginResult{}, err
	}
	if err := s.throttleStore.Reset(ctx, keys); err != nil {
		s.logger.WarnContext(ctx, "accounts: throttle reset failed", "err", err)
	}
	s.logger.InfoContext(ctx, "accounts: login succeeded", "user", rec.Name, "client", ip, "known_device", device != nil, "second_factor", used, "recovery_codes_left", left)
	return LoginResult{User: rec.User, Devices: s.deviceTokens(key, rec.User, device, a.Devices), SecondFactor: used, RecoveryCodesLeft: left}, nil
}

// useCode checks a.Code against rec's factor and records its use,
// re-reading the record when a concurrent login changed the factor (a
// conflict) so that a recovery code used elsewhere does not refuse a valid
// TOTP code. It returns which factor was used and the recovery codes left.
func (s *Service) useCode(ctx context.Context, rec Record, a SecondFactorAttempt, now time.Time) (string, int, error) {
	code := normalizeCode(a.Code)
	for range 3 {
		if rec.Disabled || rec.SecondFactor == "" || !rec.PasswordChangedAt.Equal(a.PasswordChangedAt) {
			return "", 0, fmt.Errorf("%w: the account changed since its password was checked", ErrInvalidCredentials)
		}
		f, err := decodeFactor(rec.SecondFactor)
		if err != nil {
			return "", 0, err
		}
		if a.Factor == "" || subtle.ConstantTimeCompare([]byte(a.Factor), []byte(f.id())) != 1 {
			return "", 0, fmt.Errorf("%w: the second factor changed since the password was checked", ErrInvalidCredentials)
		}
		used := ""
		switch {
		case len(code) == 6:
			secret, err := s.cfg.Sealer.Open(f.Secret, secretAAD(rec.Name))
			if err != nil {
				return "", 0, fmt.Errorf("accounts: open TOTP secret: %w", err)
			}
			step, ok := matchTOTP(string(secret), code, now, f.Step)
			if !ok {
				return "", 0, ErrInvalidCode
			}
			f.Step, used = step, "totp"
		case len(code) == recoveryCodeChars:
			want := recoveryHash(rec.Name, code)
			i := slices.IndexFunc(f.Recovery, func(h string) bool { return subtle.ConstantTimeCompare([]byte(h), []byte(want)) == 1 })
			if i < 0 {
				return "", 0, ErrInvalidCode
			}
			f.Recovery, used = slices.Delete(slices.Clone(f.Recovery), i, i+1), "recovery"
		default:
			return "", 0, ErrInvalidCode
		}
		encoded := f.encode()
		_, err = s.store.Update(ctx, rec.Name, Change{SecondFactor: &encoded, IfSecondFactor: &rec.SecondFactor})
		if err == nil {
			return used, len(f.Recovery), nil
		}
		if !errors.Is(err, ErrConflict) {
			return "", 0, err
		}
		if rec, err = s.store.Get(ctx, rec.Name); errors.Is(err, ErrNoSuchUser) {
			return "", 0, ErrInvalidCredentials
		} else if err != nil {
			return "", 0, err
		}
	}
	return "", 0, fmt.Errorf("accounts: second factor changed concurrently: %w", ErrConflict)
}

// throttleKeys returns the known device's nonce (nil for an unknown
// device) and the failure counters an attempt on rec is charged to: the
// device's own, or the account's and the client's. Login and
// VerifySecondFactor share them, so codes are guessed on the passwords'
// budget.
func (s *Service) throttleKeys(key []byte, rec Record, clientIP string, devices []string, now time.Time) ([]byte, []ThrottleKey) {
	grant := grantOf(rec.User)
	for _, token := range devices[:min(len(devices), MaxDeviceTokens)] {
		if nonce, ok := deviceNonce(key, grant, token, now, s.deviceLifetime); ok {
			return nonce, []ThrottleKey{{Kind: ThrottleDevice, Key: hex.EncodeToString(nonce), Rule: s.deviceRule}}
		}
	}
	return nil, []ThrottleKey{
		{Kind: ThrottleAccount, Key: FoldName(rec.Name), Rule: s.accountRule},
		{Kind: ThrottleIP, Key: clientKey(clientIP), Rule: s.ipRule},
	}
}

// matchTOTP returns the time step within TOTPSkew of now whose code is
// code, if it is later than after. Every candidate is computed and
// compared in constant time.
func matchTOTP(secret, code string, now time.Time, after int64) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	current := now.Unix() / int64(TOTPPeriod/time.Second)
	var found int64
	ok := false
	for step := current - TOTPSkew; step <= current+TOTPSkew; step++ {
		want, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && step > after && !ok {
			found, ok = step, true
		}
	}
	return found, ok
}

// TOTPCode returns the code of secret (base32) at t: what an
// authenticator app shows. For tests and tools.
func TOTPCode(secret string, t time.Time) (string, error) {
	return hotp.GenerateCodeCustom(secret, uint64(t.Unix()/int64(TOTPPeriod/time.Second)), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

// normalizeCode drops what people type around a code (spaces, dashes) and
// folds a recovery code's letters, mapping the look-alikes Crockford's
// base32 leaves out.
func normalizeCode(code string) string {
	if len(code) > 64 {
		return ""
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '\t':
			return -1
		case 'o', 'O':
			return '0'
		case 'i', 'I', 'l', 'L':
			return '1'
		}
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, code)
}

// newRecoveryCode returns 120 random bits in Crockford's base32, in
// groups of four: "7k2m-9x4q-...".
func newRecoveryCode() string {
	var b strings.Builder
	for i := range recoveryCodeChars {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(recoveryAlphabet[randIndex(len(recoveryAlphabet))])
	}
	return b.String()
}

// randIndex returns a uniform random index below n, a power of two up to 256.
func randIndex(n int) int {
	var c [1]byte
	_, _ = rand.Read(c[:]) // never fails (crypto/rand)
	return int(c[0]) % n
}

// recoveryHash is how a recovery code is kept: SHA-256, bound to the
// account. A fast hash is enough here, unlike for passwords: a code holds
// 120 random bits, so a stolen hash cannot be reversed by guessing (2^119
// hashes on average, per code; ASVS 6.5.2 allows a standard hash from 112
// bits), while a password's few bits of real entropy need argon2id's
// cost.
func recoveryHash(name, normalized string) string {
	sum := sha256.Sum256([]byte("cloakroom recovery code v1\x00" + FoldName(name) + "\x00" + normalized))
	return hex.EncodeToString(sum[:])
}

// SecondFactorsAvailable reports whether TOTP can be enabled: a
// [Config.Sealer] is set.
func (s *Service) SecondFactorsAvailable() bool { return s.cfg.Sealer != nil }
