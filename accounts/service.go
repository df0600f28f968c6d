package accounts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"golang.org/x/text/unicode/norm"
)

// Config configures a [Service]. Throttle is required; every other field
// has a secure default, stated in its comment, and RevokeSessions must be
// set for the operations that end sessions.
type Config struct {
	// Now is the clock for timestamps and throttling. Default time.Now.
	Now func() time.Time

	// RevokeSessions ends every session of a user; pass the session
	// manager's RevokeUser. Disable, Delete and SetPassword call it after
	// changing the account and fail with its error if it fails (ASVS 5.0
	// 7.4.2, 7.4.3). Default nil: those operations fail with ErrNoRevoker.
	// A tool that has no sessions to end passes [NoSessions].
	RevokeSessions func(ctx context.Context, user string) error

	// MaxConcurrentHashes bounds how many argon2id computations run at once,
	// each holding about 19 MiB with the default parameters, so a login
	// flood costs bounded memory. Default 2×GOMAXPROCS.
	MaxConcurrentHashes int
	// MaxHashWait is how long a call waits for a free hashing slot before it
	// fails with ErrBusy (overload, not throttling: nothing is counted
	// against the user). Default 2 seconds.
	MaxHashWait time.Duration

	// AccountThrottle slows guessing against one account from any number
	// of addresses, for attempts from devices the account does not know
	// (no valid device token, see [LoginAttempt.Devices]). Default: 5 free
	// failures per hour, then delays of 1 s, 2 s, 4 s, ... capped at 5
	// minutes. Known devices are not affected by it, so an attacker who
	// keeps it exhausted cannot lock the user out.
	AccountThrottle ThrottleConfig
	// DeviceThrottle slows guessing from one known device, on its own
	// failures only. Default: as AccountThrottle.
	DeviceThrottle ThrottleConfig
	// DeviceTokenLifetime is how long a device token stays valid after it
	// was issued; each login from the device renews it. A token also ends
	// when its account's password changes. Default
	// DefaultDeviceTokenLifetime (90 days): a browser unused for that long
	// is an unknown device again.
	DeviceTokenLifetime time.Duration
	// IPThrottle slows one client (an IPv4 address or an IPv6 /64) trying
	// many accounts from unknown devices. Default: 20 free failures per
	// hour, then delays of 1 s, 2 s, ... capped at 15 minutes.
	IPThrottle ThrottleConfig
	// Throttle keeps the failure counters and the device key. Required,
	// with no default, since where the counters live is the deployment's
	// choice: memaccounts.NewThrottle counts per process, for one node;
	// nodes that share their accounts share redisaccounts.NewThrottle or
	// pgaccounts.NewThrottle, so N nodes do not give an attacker N
	// budgets.
	Throttle ThrottleStore

	// CheckPassword is an extra check on every new password, run after
	// [ValidatePassword], for instance against a list of common or breached
	// passwords (ASVS 6.2.4, 6.2.12). Return an error wrapping
	// ErrInvalidInput to refuse. Default none.
	CheckPassword func(ctx context.Context, name, password string) error

	// Sealer encrypts TOTP secrets at rest (internal/seal's *Keyring).
	// Default nil: no second factor can be enabled (ErrNoSealer), and
	// accounts that have one cannot finish signing in until it is set
	// again; secrets are never stored in clear.
	Sealer Sealer
	// Issuer names the service in authenticator apps. Default
	// "cloakroom".
	Issuer string
	// Passkeys is the WebAuthn relying party (its ID and allowed
	// origins). Default zero: passkeys are off (ErrPasskeysOff). An
	// invalid one makes every passkey call fail with its error.
	Passkeys PasskeyConfig

	// Logger receives account events (logins, failures, changes). Passwords
	// and hashes never appear in it, nor names that match no account (they
	// may be mistyped passwords). Default slog.Default().
	Logger *slog.Logger

	// Test hooks, set through export_test.go only: production code cannot
	// lower the hashing cost.
	hashParams *Params
	onHash     func()
}

// NoSessions is a RevokeSessions for tools that manage accounts where no
// session store exists; it does nothing.
func NoSessions(context.Context, string) error { return nil }

// Service manages local accounts: it validates input, hashes passwords with
// argon2id, checks logins with throttling, and ends sessions when an account
// loses access. It is safe for concurrent use.
type Service struct {
	store   Store
	cfg     Config
	now     func() time.Time
	params  Params
	slots   chan struct{}
	maxWait time.Duration
	logger  *slog.Logger

	throttleStore                   ThrottleStore
	accountRule, deviceRule, ipRule ThrottleConfig
	deviceLifetime                  time.Duration
	keys                            keyring
	// dummy is verified for unknown users so they cost what a wrong
	// password costs.
	dummy Hash
	// webauthn is the passkeys' relying party, nil when they are off;
	// webauthnErr what was wrong with its configuration.
	webauthn    *webauthn.WebAuthn
	webauthnErr error
}

// New returns a Service over store. Zero Config fields take the defaults
// documented on [Config]; a nil Config.Throttle is a programming error, and
// New panics. It computes one password hash (about 20-70 ms) for
// timing-safe answers about unknown users.
func New(store Store, cfg Config) *Service {
	s := &Service{store: availability{store}, cfg: cfg, now: cfg.Now, params: DefaultParams(), logger: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.hashParams != nil {
		s.params = *cfg.hashParams
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	slots := cfg.MaxConcurrentHashes
	if slots <= 0 {
		slots = 2 * runtime.GOMAXPROCS(0)
	}
	s.slots = make(chan struct{}, slots)
	s.maxWait = cfg.MaxHashWait
	if s.maxWait <= 0 {
		s.maxWait = 2 * time.Second
	}
	if cfg.Throttle == nil {
		panic("accounts: Config.Throttle is nil: pass memaccounts.NewThrottle for one process, or a store the nodes share")
	}
	s.throttleStore = cfg.Throttle
	s.accountRule = cfg.AccountThrottle.withDefaults(defaultAccountThrottle)
	s.deviceRule = cfg.DeviceThrottle.withDefaults(s.accountRule)
	if cfg.DeviceThrottle == (ThrottleConfig{}) {
		s.deviceRule = s.accountRule
	}
	s.ipRule = cfg.IPThrottle.withDefaults(defaultIPThrottle)
	s.deviceLifetime = cfg.DeviceTokenLifetime
	if s.deviceLifetime <= 0 {
		s.deviceLifetime = DefaultDeviceTokenLifetime
	}

	encoded, err := HashPassword(rand.Text(), s.params)
	if err != nil {
		panic("accounts: invalid hash parameters: " + err.Error())
	}
	s.dummy, _ = ParseHash(encoded)
	s.webauthn, s.webauthnErr = newWebAuthn(cfg)
	return s
}

// HashParams returns the parameters the service hashes new passwords with.
func (s *Service) HashParams() Params { return s.params }

// Add creates a user. The name, roles, email and password are validated
// first (ErrInvalidInput); the name is stored in its [CanonicalName]
// form; an existing name, in any case or normalisation ([FoldName]), is
// ErrUserExists.
func (s *Service) Add(ctx context.Context, name, password string, roles []string, email string) error {
	name, err := CanonicalName(name)
	if err != nil {
		return err
	}
	if err := ValidateRoles(roles); err != nil {
		return err
	}
	if err := ValidateEmail(email); err != nil {
		return err
	}
	if err := s.checkPassword(ctx, name, email, password); err != nil {
		return err
	}
	// Fail fast, before spending a hash, if the name is taken. Create
	// still decides races.
	if _, err := s.store.Get(ctx, name); err == nil {
		return fmt.Errorf("%w: %q", ErrUserExists, name)
	} else if !errors.Is(err, ErrNoSuchUser) {
		return err
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	now := s.timestamp()
	rec := Record{
		User:         User{Name: name, Email: email, Roles: roles, CreatedAt: now, PasswordChangedAt: now},
		PasswordHash: hash,
	}
	if err := s.store.Create(ctx, rec); err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "accounts: user added", "user", name, "roles", roles)
	return nil
}

// SetPassword replaces a user's password, then ends all the user's
// sessions. If ending them fails, the new password is in place and the
// error is returned; call again to retry. It does not check the current
// password: for a user changing their own, use [Service.ChangeOwnPassword].
func (s *Service) SetPassword(ctx context.Context, name, password string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return err
	}
	if err := s.checkPassword(ctx, rec.Name, rec.Email, password); err != nil {
		return err
	}
	if s.cfg.RevokeSessions == nil {
		return ErrNoRevoker
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	now := s.newGeneration(rec)
	u, err := s.update(ctx, rec.Name, Change{PasswordHash: &hash, PasswordChangedAt: &now}, "accounts: password changed")
	if err != nil {
		return err
	}
	return s.revoke(ctx, u.Name)
}

// SetRoles replaces a user's roles and ends the user's sessions, which carry
// the roles they were created with.
func (s *Service) SetRoles(ctx context.Context, name string, roles []string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateRoles(roles); err != nil {
		return err
	}
	if s.cfg.RevokeSessions == nil {
		return ErrNoRevoker
	}
	u, err := s.update(ctx, name, Change{Roles: &roles}, "accounts: roles changed", "roles", roles)
	if err != nil {
		return err
	}
	// Sessions carry the roles they were created with; a role change is a
	// privilege change, so the user's sessions end and the next login
	// picks up the new roles.
	return s.revoke(ctx, u.Name)
}

// SetEmail replaces a user's email address ("" removes it).
func (s *Service) SetEmail(ctx context.Context, name, email string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ValidateEmail(email); err != nil {
		return err
	}
	_, err := s.update(ctx, name, Change{Email: &email}, "accounts: email changed")
	return err
}

// Disable stops a user from logging in and ends all their sessions (ASVS
// 7.4.2). The account stays disabled if ending the sessions fails; the
// error is returned and calling Disable again retries.
func (s *Service) Disable(ctx context.Context, name string) error {
	if err := s.checkRevocable(name); err != nil {
		return err
	}
	u, err := s.update(ctx, name, Change{Disabled: ptr(true)}, "accounts: user disabled")
	if err != nil {
		return err
	}
	return s.revoke(ctx, u.Name)
}

// Enable lets a disabled user log in again.
func (s *Service) Enable(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	_, err := s.update(ctx, name, Change{Disabled: ptr(false)}, "accounts: user enabled")
	return err
}

// Delete removes a user and ends all their sessions. It disables the
// account first, so no login slips in while sessions are being ended; if
// ending them fails, the user stays (disabled) and Delete can be retried.
func (s *Service) Delete(ctx context.Context, name string) error {
	if err := s.checkRevocable(name); err != nil {
		return err
	}
	u, err := s.store.Update(ctx, name, Change{Disabled: ptr(true)})
	if err != nil {
		return err
	}
	if err := s.revoke(ctx, u.Name); err != nil {
		return err
	}
	if err := s.store.Delete(ctx, u.Name); err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "accounts: user deleted", "user", u.Name)
	return nil
}

// Get returns a user.
func (s *Service) Get(ctx context.Context, name string) (User, error) {
	if err := ValidateName(name); err != nil {
		return User{}, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return User{}, err
	}
	return rec.User, nil
}

// SessionUserID returns the user ID sessions carry for a name typed in
// any case: the account's stored name, so "ALICE" finds alice's sessions
// as the login does; or name unchanged when no account has it (a user from
// elsewhere, such as single sign-on, whose IDs are compared exactly).
// Every place that takes a user name for sessions (admin API, CLI) uses
// it.
func (s *Service) SessionUserID(ctx context.Context, name string) (string, error) {
	if ValidateName(name) != nil {
		return name, nil // cannot be a local account
	}
	rec, err := s.store.Get(ctx, name)
	switch {
	case err == nil:
		return rec.Name, nil
	case errors.Is(err, ErrNoSuchUser):
		return name, nil
	}
	return "", err
}

// List returns every user, sorted by name.
func (s *Service) List(ctx context.Context) ([]User, error) {
	return s.store.List(ctx)
}

// LoginAttempt is one login to check.
type LoginAttempt struct {
	Name, Password string
	// ClientIP is the client's real address (behind a proxy, the one the
	// proxy reports), used to throttle guessing from unknown devices.
	ClientIP string
	// Devices are the device tokens the browser presented (its device
	// cookie), at most MaxDeviceTokens are looked at. One that is valid
	// for Name makes this a known device, throttled on its own failures.
	Devices []string
	// Reauthentication marks the password re-entry of a user signed in
	// already, through every factor (a step-up, a password change): no
	// second factor is asked. For a sign-in it is false, and an account
	// with a second factor (an authenticator app or a passkey, see
	// [SignInFactors]) answers ErrSecondFactorRequired.
	Reauthentication bool
}

// LoginResult is a successful login.
type LoginResult struct {
	User User
	// Devices are the device tokens the browser should keep from now on:
	// this account's first, then the other well-formed ones it presented.
	Devices []string
	// SecondFactor is what proved the second factor in
	// [Service.VerifySecondFactor]: "totp" or "recovery"; "" after a
	// password alone.
	SecondFactor string
	// RecoveryCodesLeft is how many recovery codes the account has left,
	// after VerifySecondFactor.
	RecoveryCodesLeft int
}

// Login checks a login and returns the user, whose Name (in its stored
// case) is the ID to pass to Session.Login, and the device tokens to store
// in the browser.
//
// An unknown user, a disabled user and a wrong password all give exactly
// ErrInvalidCredentials after one argon2id computation of the same cost
// and the same store calls, so neither the answer nor its cost tells
// whether the account exists. Too many recent failures give a
// *ThrottledError before any hash is computed: for a known device, its own
// failures; otherwise the account's failures from unknown devices and the
// client's. Other errors (store failures, a cancelled context) are
// returned wrapped.
func (s *Service) Login(ctx context.Context, a LoginAttempt) (LoginResult, error) {
	// The name's format is public, and no stored password is empty or
	// longer than MaxPasswordBytes: refuse those without hashing.
	if ValidateName(a.Name) != nil || a.Password == "" || len(a.Password) > MaxPasswordBytes {
		return LoginResult{}, ErrInvalidCredentials
	}
	key, err := s.deviceKey(ctx)
	if err != nil {
		return LoginResult{}, err
	}
	ip := clientKey(a.ClientIP)
	// The record is read first, for known and unknown names alike: a
	// device token is valid only for the account's current password.
	rec, err := s.store.Get(ctx, a.Name)
	found := err == nil
	if err != nil && !errors.Is(err, ErrNoSuchUser) {
		return LoginResult{}, err
	}
	now := s.now()
	var device []byte // the known device's nonce
	var keys []ThrottleKey
	if found {
		device, keys = s.throttleKeys(key, rec, a.ClientIP, a.Devices, now)
	} else {
		keys = []ThrottleKey{
			{Kind: ThrottleAccount, Key: FoldName(a.Name), Rule: s.accountRule},
			{Kind: ThrottleIP, Key: ip, Rule: s.ipRule},
		}
	}
	// Charged as a failure in advance, so a burst of concurrent guesses is
	// limited as if they had come one after another.
	wait, err := s.throttleStore.Begin(ctx, now, keys)
	if err != nil {
		return LoginResult{}, fmt.Errorf("accounts: throttle: %w", err)
	}
	if wait > 0 {
		s.logger.WarnContext(ctx, "accounts: login throttled", "client", ip, "known_device", device != nil, "retry_after", wait)
		return LoginResult{}, &ThrottledError{RetryAfter: wait}
	}

	target, reason := s.dummy, "unknown user"
	if found {
		if h, err := ParseHash(rec.PasswordHash); err != nil {
			// Keep the cost of a normal failure, and tell the operator.
			s.logger.ErrorContext(ctx, "accounts: stored password hash unusable", "user", rec.Name, "err", err)
			reason = "stored hash unusable"
		} else {
			target, reason = h, ""
		}
	}
	ok, err := s.verify(ctx, target, a.Password)
	if err != nil {
		// No verdict (busy, cancelled): take back the failure charged.
		if err := s.throttleStore.Refund(context.WithoutCancel(ctx), s.now(), keys); err != nil {
			s.logger.WarnContext(ctx, "accounts: throttle refund failed", "err", err)
		}
		return LoginResult{}, err
	}
	switch {
	case reason != "":
	case !ok:
		reason = "wrong password"
	case rec.Disabled:
		reason = "account disabled"
	}
	if reason != "" {
		attrs := []any{"reason", reason, "client", ip, "known_device", device != nil}
		if found { // a name matching no account may be a mistyped password: not logged
			attrs = append(attrs, "user", rec.Name)
		}
		s.logger.InfoContext(ctx, "accounts: login failed", attrs...)
		return LoginResult{}, ErrInvalidCredentials
	}
	// An account with any second factor (an app or a passkey) signs in
	// with it after the password: a phished password alone opens nothing.
	if factors := s.signInFactors(rec); factors.Any() && !a.Reauthentication {
		// The failure charged stays until the second factor is right, so
		// someone who has the password cannot reset the counters between
		// guesses at the code.
		s.logger.InfoContext(ctx, "accounts: password accepted, second factor required", "user", rec.Name, "client", ip, "known_device", device != nil)
		if NeedsRehash(rec.PasswordHash, s.params) {
			s.rehash(ctx, rec, a.Password)
		}
		return LoginResult{}, &SecondFactorRequiredError{User: rec.User, Factor: factorID(rec.SecondFactor), Factors: factors}
	}
	// A known device clears its own failures only: the budget of unknown
	// devices stays spent while someone else is guessing.
	if err := s.throttleStore.Reset(ctx, keys); err != nil {
		s.logger.WarnContext(ctx, "accounts: throttle reset failed", "err", err)
	}
	s.logger.InfoContext(ctx, "accounts: login succeeded", "user", rec.Name, "client", ip, "known_device", device != nil)
	if NeedsRehash(rec.PasswordHash, s.params) {
		s.rehash(ctx, rec, a.Password)
	}
	return LoginResult{User: rec.User, Devices: s.deviceTokens(key, rec.User, device, a.Devices)}, nil
}

// deviceTokens returns the tokens a browser keeps after signing in to u:
// a new one for u first, issued now and keeping the device's nonce (its
// throttling key) if it was known, then the browser's tokens for other
// accounts that are well formed and not past their lifetime. Tokens for
// u of an earlier password are dropped with those past their lifetime.
func (s *Service) deviceTokens(key []byte, u User, nonce []byte, presented []string) []string {
	now := s.now()
	if nonce == nil {
		nonce = newDeviceNonce()
	}
	grant := grantOf(u)
	devices := []string{encodeDeviceToken(key, grant, nonce, now)}
	for _, t := range presented {
		if len(devices) == MaxDeviceTokens {
			break
		}
		if keepDeviceToken(t, now, s.deviceLifetime) && !slices.Contains(devices, t) && !signedFor(key, grant, t) {
			devices = append(devices, t)
		}
	}
	return devices
}

// newGeneration is the PasswordChangedAt of a password change of rec:
// now, or a microsecond after the current one if the clock has not moved
// past it, so that every change ends the device tokens of the one before
// (they are bound to it to the microsecond).
func (s *Service) newGeneration(rec Record) time.Time {
	now := s.timestamp()
	if now.UnixMicro() <= rec.PasswordChangedAt.UnixMicro() {
		now = time.UnixMicro(rec.PasswordChangedAt.UnixMicro() + 1).UTC()
	}
	return now
}

// rehash stores the password again with the current parameters after a
// successful login. It is best effort: it skips when hashing slots are
// busy, and the IfPasswordHash condition keeps it from undoing a password
// change made meanwhile.
func (s *Service) rehash(ctx context.Context, rec Record, password string) {
	select {
	case s.slots <- struct{}{}:
	default:
		return
	}
	hash, err := s.hashInSlot(password)
	if err != nil {
		return
	}
	if _, err := s.store.Update(ctx, rec.Name, Change{PasswordHash: &hash, IfPasswordHash: rec.PasswordHash}); err != nil {
		if !errors.Is(err, ErrConflict) {
			s.logger.WarnContext(ctx, "accounts: password rehash not saved", "user", rec.Name, "err", err)
		}
		return
	}
	s.logger.InfoContext(ctx, "accounts: password rehashed with current parameters", "user", rec.Name)
}

func (s *Service) checkPassword(ctx context.Context, name, email, password string) error {
	if err := ValidatePassword(name, password); err != nil {
		return err
	}
	if email != "" {
		lower := norm.NFC.String(strings.ToLower(password))
		if err := personalWord(lower, email, "email address"); err != nil {
			return err
		}
		if local, _, _ := strings.Cut(email, "@"); local != "" {
			if err := personalWord(lower, local, "email address's name"); err != nil {
				return err
			}
		}
	}
	if s.cfg.CheckPassword != nil {
		return s.cfg.CheckPassword(ctx, name, password)
	}
	return nil
}

// update applies c to the account name and logs event with the user's
// name and attrs.
func (s *Service) update(ctx context.Context, name string, c Change, event string, attrs ...any) (User, error) {
	u, err := s.store.Update(ctx, name, c)
	if err != nil {
		return User{}, err
	}
	s.logger.InfoContext(ctx, event, append([]any{"user", u.Name}, attrs...)...)
	return u, nil
}

// checkRevocable checks name for Disable and Delete, which end the user's
// sessions after changing the account: with no RevokeSessions configured,
// they fail before changing anything.
func (s *Service) checkRevocable(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if s.cfg.RevokeSessions == nil {
		return ErrNoRevoker
	}
	return nil
}

func (s *Service) revoke(ctx context.Context, name string) error {
	if err := s.cfg.RevokeSessions(ctx, name); err != nil {
		s.logger.ErrorContext(ctx, "accounts: ending sessions failed", "user", name, "err", err)
		return fmt.Errorf("accounts: end sessions of %q: %w", name, err)
	}
	s.logger.InfoContext(ctx, "accounts: sessions ended", "user", name)
	return nil
}

// acquire takes a hashing slot, waiting at most maxWait.
func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(s.maxWait)
	defer timer.Stop()
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("accounts: waiting to hash: %w", ctx.Err())
	case <-timer.C:
		s.logger.WarnContext(ctx, "accounts: all hashing slots busy", "slots", cap(s.slots), "waited", s.maxWait)
		return ErrBusy
	}
}

func (s *Service) hash(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	return s.hashInSlot(password)
}

// hashInSlot hashes password in a slot already taken, and frees it.
func (s *Service) hashInSlot(password string) (string, error) {
	defer func() { <-s.slots }()
	if s.cfg.onHash != nil {
		s.cfg.onHash()
	}
	return HashPassword(password, s.params)
}

func (s *Service) verify(ctx context.Context, h Hash, password string) (bool, error) {
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.slots }()
	if s.cfg.onHash != nil {
		s.cfg.onHash()
	}
	return h.Verify(password), nil
}

// timestamp is the current time without its monotonic reading, in UTC,
// as stores keep it.
func (s *Service) timestamp() time.Time { return s.now().UTC().Round(0) }

func ptr[T any](v T) *T { return &v }

// ChangeOwnPassword is the self-service change ASVS 6.2.2 and 6.2.3 ask
// for: it checks the current password exactly as [Service.Login] does
// (same errors, same throttling, known devices), validates the new one and
// stores it. The change ends every device token of the account; the
// result holds the user and the device tokens the browser that made the
// change keeps from now on (a new one for this account, its others), so
// the change does not make its own browser an unknown device. It ends no
// session: the caller offers to end the user's other sessions (ASVS
// 7.4.3), and keeps the one that made the change.
func (s *Service) ChangeOwnPassword(ctx context.Context, current LoginAttempt, newPassword string) (LoginResult, error) {
	if err := ValidatePassword(current.Name, newPassword); err != nil {
		return LoginResult{}, err
	}
	// The user is signed in: the password re-entry is a step-up.
	current.Reauthentication = true
	res, err := s.Login(ctx, current)
	if err != nil {
		return LoginResult{}, err
	}
	rec, err := s.store.Get(ctx, res.User.Name)
	if err != nil {
		return LoginResult{}, err
	}
	if err := s.checkPassword(ctx, rec.Name, rec.Email, newPassword); err != nil {
		return LoginResult{}, err
	}
	hash, err := s.hash(ctx, newPassword)
	if err != nil {
		return LoginResult{}, err
	}
	now := s.newGeneration(rec)
	// IfPasswordHash: a concurrent change by an admin wins over this one.
	u, err := s.update(ctx, rec.Name, Change{PasswordHash: &hash, PasswordChangedAt: &now, IfPasswordHash: rec.PasswordHash}, "accounts: password changed by its user")
	if err != nil {
		return LoginResult{}, err
	}
	key, err := s.deviceKey(ctx)
	if err != nil {
		return LoginResult{}, err
	}
	// The login just issued this browser's token for the account: keep its
	// nonce (the device's throttling key), sign it for the new password.
	var nonce []byte
	if t, ok := decodeDeviceToken(res.Devices[0]); ok {
		nonce = t.nonce
	}
	return LoginResult{User: u, Devices: s.deviceTokens(key, u, nonce, res.Devices[1:])}, nil
}
