package accounts

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Passkeys are WebAuthn public-key credentials a local account registers
// after a recent sign-in and then signs in with alone: a discoverable
// credential names its account (the user handle), so no name is typed.
// The account keeps each passkey's ID, public key, sign count and backup
// flags in Record.Passkeys; the private key never leaves the
// authenticator. A ceremony's state (its challenge) is what the caller
// keeps between Begin and Finish, single use and short-lived.
const (
	// PasskeyCeremonyLifetime bounds a ceremony, from its challenge to
	// its answer.
	PasskeyCeremonyLifetime = 5 * time.Minute
	// MaxPasskeys is how many passkeys one account may register.
	MaxPasskeys = 10
	// MaxPasskeyNameLength bounds a passkey's name, in bytes.
	MaxPasskeyNameLength = 64
	// MaxPasskeyResponse bounds an authenticator's answer, in bytes.
	MaxPasskeyResponse = 64 << 10

	passkeysVersion = 1
)

// PasskeyConfig is the relying party. Zero: passkeys are off.
type PasskeyConfig struct {
	// RPID is the relying party ID, a registrable domain the origins lie
	// in ("example.com"). Default "": passkeys off.
	RPID string
	// Origins are the origins allowed to run a ceremony
	// ("https://login.example.com"), each https (http only for localhost)
	// and within RPID. Required with RPID; no default.
	Origins []string
	// Name is the relying party's name authenticators show. Default
	// [Config.Issuer].
	Name string
}

// Check reports what is wrong with c, if anything; the zero config
// (passkeys off) is valid.
func (c PasskeyConfig) Check() error {
	if c.RPID == "" && len(c.Origins) == 0 {
		return nil
	}
	if c.RPID == "" {
		return invalid("passkey origins are set without a relying-party ID (--webauthn-rp-id)")
	}
	if len(c.Origins) == 0 {
		return invalid("a relying-party ID is set without an allowed origin (--webauthn-origin)")
	}
	rpID := strings.ToLower(c.RPID)
	if rpID != c.RPID || strings.ContainsAny(rpID, ":/ ") || strings.HasPrefix(rpID, ".") || strings.HasSuffix(rpID, ".") {
		return invalid("relying-party ID %q is not a lower-case domain name (no scheme, port or path)", c.RPID)
	}
	for _, o := range c.Origins {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return invalid("passkey origin %q is not an origin (scheme://host[:port])", o)
		}
		host := u.Hostname()
		if u.Scheme != "https" && !(u.Scheme == "http" && host == "localhost") {
			return invalid("passkey origin %q must be https (http only for localhost)", o)
		}
		if host != rpID && !strings.HasSuffix(host, "."+rpID) {
			return invalid("passkey origin %q is not within the relying-party ID %q", o, rpID)
		}
	}
	return nil
}

// newWebAuthn builds the relying party of cfg, nil when passkeys are off.
func newWebAuthn(cfg Config) (*webauthn.WebAuthn, error) {
	pc := cfg.Passkeys
	if pc.RPID == "" && len(pc.Origins) == 0 {
		return nil, nil
	}
	if err := pc.Check(); err != nil {
		return nil, err
	}
	name := pc.Name
	if name == "" {
		name = cfg.Issuer
	}
	if name == "" {
		name = "cloakroom"
	}
	return webauthn.New(&webauthn.Config{
		RPID: pc.RPID, RPDisplayName: name, RPOrigins: slices.Clone(pc.Origins),
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: PasskeyCeremonyLifetime, TimeoutUVD: PasskeyCeremonyLifetime},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: PasskeyCeremonyLifetime, TimeoutUVD: PasskeyCeremonyLifetime},
		},
	})
}

// storedPasskeys is Record.Passkeys, JSON-encoded.
type storedPasskeys struct {
	V    int             `json:"v"`
	Keys []storedPasskey `json:"keys"`
}

type storedPasskey struct {
	Name     string `json:"name"`
	Created  int64  `json:"created"`             // Unix seconds
	LastUsed int64  `json:"last_used,omitempty"` // Unix seconds, 0 never
	// Credential is the credential record: ID, public key, sign count,
	// flags (backup eligible and state), AAGUID. No private key exists
	// server-side.
	Credential webauthn.Credential `json:"credential"`
}

func decodePasskeys(s string) (storedPasskeys, error) {
	if s == "" {
		return storedPasskeys{V: passkeysVersion}, nil
	}
	var p storedPasskeys
	if err := json.Unmarshal([]byte(s), &p); err != nil || p.V != passkeysVersion {
		return storedPasskeys{}, fmt.Errorf("accounts: stored passkeys unreadable (version %d)", p.V)
	}
	return p, nil
}

func (p storedPasskeys) encode() string {
	if len(p.Keys) == 0 {
		return ""
	}
	b, err := json.Marshal(p)
	if err != nil { // byte slices and plain fields: never happens
		panic("accounts: encode passkeys: " + err.Error())
	}
	return string(b)
}

// passkeyUser is an account as the relying party sees it.
type passkeyUser struct {
	rec  Record
	keys storedPasskeys
}

// The user handle is the account's folded name: the authenticator
// already shows the name (user.name), and the handle finds the account
// without an index. A name deleted and created again does not inherit
// the old account's passkeys: they are not in the new record.
func (u passkeyUser) WebAuthnID() []byte          { return []byte(FoldName(u.rec.Name)) }
func (u passkeyUser) WebAuthnName() string        { return u.rec.Name }
func (u passkeyUser) WebAuthnDisplayName() string { return u.rec.Name }
func (u passkeyUser) WebAuthnCredentials() []webauthn.Credential {
	creds := make([]webauthn.Credential, len(u.keys.Keys))
	for i, k := range u.keys.Keys {
		creds[i] = k.Credential
	}
	return creds
}

// PasskeyInfo describes a registered passkey, never its key.
type PasskeyInfo struct {
	// ID is the credential ID, base64url without padding.
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// Synced: the credential may be backed up (backup eligible): a
	// synced passkey rather than one bound to a device.
	Synced    bool   `json:"synced"`
	BackedUp  bool   `json:"backed_up"`
	SignCount uint32 `json:"sign_count"`
}

func credentialID(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

func (k storedPasskey) info() PasskeyInfo {
	i := PasskeyInfo{
		ID: credentialID(k.Credential.ID), Name: k.Name, Created: time.Unix(k.Created, 0).UTC(),
		Synced: k.Credential.Flags.BackupEligible, BackedUp: k.Credential.Flags.BackupState,
		SignCount: k.Credential.Authenticator.SignCount,
	}
	if k.LastUsed != 0 {
		i.LastUsed = time.Unix(k.LastUsed, 0).UTC()
	}
	return i
}

// PasskeysEnabled reports whether a relying party is configured.
func (s *Service) PasskeysEnabled() bool { return s.webauthn != nil }

func (s *Service) relyingParty() (*webauthn.WebAuthn, error) {
	if s.webauthnErr != nil {
		return nil, s.webauthnErr
	}
	if s.webauthn == nil {
		return nil, ErrPasskeysOff
	}
	return s.webauthn, nil
}

// PasskeyCeremony is what Begin returns: Options for the browser
// (navigator.credentials.create or get, as JSON), and State for the
// caller to keep, bound to the browser that asked, single use, until
// Expires, and to pass to Finish. State holds the challenge; it is no
// secret from the browser but must come back unchanged.
type PasskeyCeremony struct {
	Options json.RawMessage
	State   []byte
	Expires time.Time
}

// ceremonyState is PasskeyCeremony.State.
type ceremonyState struct {
	// User is the account a registration is for ("" for a sign-in).
	User    string               `json:"user,omitempty"`
	Session webauthn.SessionData `json:"session"`
}

// Passkeys lists name's passkeys.
func (s *Service) Passkeys(ctx context.Context, name string) ([]PasskeyInfo, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	keys, err := decodePasskeys(rec.Passkeys)
	if err != nil {
		return nil, err
	}
	infos := make([]PasskeyInfo, len(keys.Keys))
	for i, k := range keys.Keys {
		infos[i] = k.info()
	}
	return infos, nil
}

// BeginPasskeyRegistration starts registering a passkey for name: a
// discoverable credential, user verification required, no attestation,
// the account's passkeys excluded. The caller must have checked that the
// user signed in recently.
func (s *Service) BeginPasskeyRegistration(ctx context.Context, name string) (PasskeyCeremony, error) {
	rp, rec, keys, err := s.passkeyAccount(ctx, name)
	if err != nil {
		return PasskeyCeremony{}, err
	}
	if len(keys.Keys) >= MaxPasskeys {
		return PasskeyCeremony{}, ErrTooManyPasskeys
	}
	user := passkeyUser{rec: rec, keys: keys}
	creation, session, err := rp.BeginRegistration(user,
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementRequired, RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification: protocol.VerificationRequired,
		}),
		webauthn.WithExclusions(webauthn.Credentials(user.WebAuthnCredentials()).CredentialDescriptors()),
	)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("accounts: begin passkey registration: %w", err)
	}
	return s.ceremony(creation, ceremonyState{User: rec.Name, Session: *session})
}

// passkeyAccount is what a ceremony for name starts from: the relying
// party (ErrPasskeysOff without one), the account and its passkeys.
func (s *Service) passkeyAccount(ctx context.Context, name string) (*webauthn.WebAuthn, Record, storedPasskeys, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return nil, Record{}, storedPasskeys{}, err
	}
	if err := ValidateName(name); err != nil {
		return nil, Record{}, storedPasskeys{}, err
	}
	rec, err := s.store.Get(ctx, name)
	if err != nil {
		return nil, Record{}, storedPasskeys{}, err
	}
	keys, err := decodePasskeys(rec.Passkeys)
	if err != nil {
		return nil, Record{}, storedPasskeys{}, err
	}
	return rp, rec, keys, nil
}

func (s *Service) ceremony(options any, state ceremonyState) (PasskeyCeremony, error) {
	opts, err := json.Marshal(options)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("accounts: encode passkey options: %w", err)
	}
	st, err := json.Marshal(state)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("accounts: encode passkey ceremony: %w", err)
	}
	return PasskeyCeremony{Options: opts, State: st, Expires: s.now().Add(PasskeyCeremonyLifetime)}, nil
}

func openCeremony(state []byte, user string) (ceremonyState, error) {
	var st ceremonyState
	if err := json.Unmarshal(state, &st); err != nil || st.Session.Challenge == "" {
		return ceremonyState{}, fmt.Errorf("%w: the ceremony is unreadable", ErrInvalidPasskey)
	}
	if FoldName(st.User) != FoldName(user) {
		return ceremonyState{}, fmt.Errorf("%w: the ceremony is another account's", ErrInvalidPasskey)
	}
	return st, nil
}

// ValidatePasskeyName checks a passkey's name: 1 to MaxPasskeyNameLength
// bytes of printable UTF-8.
func ValidatePasskeyName(label string) error {
	switch {
	case label == "":
		return invalid("give the passkey a name")
	case len(label) > MaxPasskeyNameLength:
		return invalid("a passkey's name is at most %d bytes long", MaxPasskeyNameLength)
	case !utf8.ValidString(label) || strings.IndexFunc(label, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
		return invalid("a passkey's name must be printable text")
	}
	return nil
}

// FinishPasskeyRegistration checks the authenticator's answer (JSON, as
// the browser's PublicKeyCredential serialises) to the ceremony state of
// name and adds the passkey under label. It fails with ErrInvalidPasskey
// for an answer the relying party refuses, ErrTooManyPasskeys,
// ErrInvalidInput for a bad label.
func (s *Service) FinishPasskeyRegistration(ctx context.Context, name, label string, state, response []byte) (PasskeyInfo, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return PasskeyInfo{}, err
	}
	if err := ValidateName(name); err != nil {
		return PasskeyInfo{}, err
	}
	label = strings.TrimSpace(label)
	if err := ValidatePasskeyName(label); err != nil {
		return PasskeyInfo{}, err
	}
	st, err := openCeremony(state, name)
	if err != nil {
		return PasskeyInfo{}, err
	}
	if len(response) > MaxPasskeyResponse {
		return PasskeyInfo{}, fmt.Errorf("%w: the answer is too long", ErrInvalidPasskey)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return PasskeyInfo{}, fmt.Errorf("%w: %s", ErrInvalidPasskey, protocolReason(err))
	}
	for range 3 {
		rec, err := s.store.Get(ctx, name)
		if err != nil {
			return PasskeyInfo{}, err
		}
		keys, err := decodePasskeys(rec.Passkeys)
		if err != nil {
			return PasskeyInfo{}, err
		}
		if len(keys.Keys) >= MaxPasskeys {
			return PasskeyInfo{}, ErrTooManyPasskeys
		}
		user := passkeyUser{rec: rec, keys: keys}
		cred, err := rp.CreateCredential(user, st.Session, parsed)
		if err != nil {
			return PasskeyInfo{}, fmt.Errorf("%w: %s", ErrInvalidPasskey, protocolReason(err))
		}
		if slices.ContainsFunc(keys.Keys, func(k storedPasskey) bool { return bytes.Equal(k.Credential.ID, cred.ID) }) {
			return PasskeyInfo{}, fmt.Errorf("%w: this passkey is registered already", ErrInvalidPasskey)
		}
		// The attestation statement is not kept: "none" was asked for,
		// and the record needs the key, the count and the flags only.
		cred.Attestation = webauthn.CredentialAttestation{}
		k := storedPasskey{Name: label, Created: s.now().Unix(), Credential: *cred}
		keys.Keys = append(slices.Clone(keys.Keys), k)
		encoded := keys.encode()
		_, err = s.store.Update(ctx, rec.Name, Change{Passkeys: &encoded, IfPasskeys: &rec.Passkeys})
		if errors.Is(err, ErrConflict) {
			continue // a sign-in or another change raced: read again
		}
		if err != nil {
			return PasskeyInfo{}, err
		}
		s.logger.InfoContext(ctx, "accounts: passkey registered", "user", rec.Name, "passkey", k.info().ID,
			"synced", cred.Flags.BackupEligible, "user_verified", cred.Flags.UserVerified)
		return k.info(), nil
	}
	return PasskeyInfo{}, fmt.Errorf("accounts: passkeys changed concurrently: %w", ErrConflict)
}

// RemovePasskey removes name's passkey id (as [PasskeyInfo.ID]). It fails
// with ErrNoSuchPasskey.
func (s *Service) RemovePasskey(ctx context.Context, name, id string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) == 0 {
		return ErrNoSuchPasskey
	}
	for range 3 {
		rec, err := s.store.Get(ctx, name)
		if err != nil {
			return err
		}
		keys, err := decodePasskeys(rec.Passkeys)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(keys.Keys, func(k storedPasskey) bool { return bytes.Equal(k.Credential.ID, raw) })
		if i < 0 {
			return ErrNoSuchPasskey
		}
		keys.Keys = slices.Delete(slices.Clone(keys.Keys), i, i+1)
		encoded := keys.encode()
		_, err = s.store.Update(ctx, rec.Name, Change{Passkeys: &encoded, IfPasskeys: &rec.Passkeys})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.logger.InfoContext(ctx, "accounts: passkey removed", "user", rec.Name, "passkey", id)
		return nil
	}
	return fmt.Errorf("accounts: passkeys changed concurrently: %w", ErrConflict)
}

// BeginPasskeyLogin starts a sign-in with a discoverable passkey: no
// account named, user verification required. A passkey replaces the
// password and any second factor, so the authenticator must verify its
// user (PIN or biometric): the key is then two factors, and a key that
// only tests presence (a security key without a PIN) is refused, since
// it would be one factor standing in for two, and the sign-in rules
// count hwk and swk as a second factor.
func (s *Service) BeginPasskeyLogin() (PasskeyCeremony, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return PasskeyCeremony{}, err
	}
	assertion, session, err := rp.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("accounts: begin passkey sign-in: %w", err)
	}
	return s.ceremony(assertion, ceremonyState{Session: *session})
}

// PasskeyLoginResult is a passkey sign-in that succeeded.
type PasskeyLoginResult struct {
	User User
	// Passkey is the passkey used, after the sign-in.
	Passkey PasskeyInfo
	// UserVerified: the authenticator verified the user (a PIN or a
	// biometric) in this ceremony. Always true for a sign-in with the
	// passkey alone: it requires it.
	UserVerified bool
	// Synced: a backup-eligible (synced) passkey, a key held in
	// software; otherwise bound to its device's hardware.
	Synced bool
	// Devices are the device tokens the browser should keep, after a
	// passkey used as the second factor ([Service.VerifyPasskeySecondFactor]);
	// nil after a sign-in with the passkey alone.
	Devices []string
}

// PasskeyLogin checks a discoverable sign-in's answer against its
// ceremony state: the account named by the user handle, one of its
// passkeys, the signature over the challenge, the origin, the relying
// party, a sign count above the stored one (unless the authenticator
// keeps none: both zero), the backup-eligible flag unchanged. The new
// count and backup state are recorded with one compare-and-swap, so of
// two sign-ins racing with one answer only one succeeds. Every refusal is
// ErrInvalidPasskey (a disabled account too: no session, and no hint).
func (s *Service) PasskeyLogin(ctx context.Context, state, response []byte) (PasskeyLoginResult, error) {
	st, parsed, rp, err := s.openAssertion(state, "", response)
	if err != nil {
		return PasskeyLoginResult{}, err
	}
	return s.assert(ctx, func() (*passkeyUser, *webauthn.Credential, error) {
		var found *passkeyUser
		var lookupErr error
		handler := func(rawID, userHandle []byte) (webauthn.User, error) {
			name := string(userHandle)
			if ValidateName(name) != nil {
				lookupErr = fmt.Errorf("%w: the user handle names no account", ErrInvalidPasskey)
				return nil, lookupErr
			}
			rec, err := s.store.Get(ctx, name)
			if err != nil {
				if !errors.Is(err, ErrNoSuchUser) {
					lookupErr = err // an outage, not a refusal
				}
				return nil, err
			}
			if FoldName(rec.Name) != name {
				return nil, errors.New("the user handle is not a folded name")
			}
			keys, err := decodePasskeys(rec.Passkeys)
			if err != nil {
				lookupErr = err
				return nil, err
			}
			found = &passkeyUser{rec: rec, keys: keys}
			return *found, nil
		}
		cred, err := rp.ValidateDiscoverableLogin(handler, st.Session, parsed)
		if err != nil {
			if lookupErr != nil && !errors.Is(lookupErr, ErrInvalidPasskey) {
				return nil, nil, lookupErr
			}
			s.logger.InfoContext(ctx, "accounts: passkey sign-in refused", "reason", protocolReason(err))
			return nil, nil, fmt.Errorf("%w: %s", ErrInvalidPasskey, protocolReason(err))
		}
		if found.rec.Disabled {
			s.logger.InfoContext(ctx, "accounts: passkey sign-in refused: account disabled", "user", found.rec.Name)
			return nil, nil, fmt.Errorf("%w: the account is disabled", ErrInvalidPasskey)
		}
		return found, cred, nil
	}, parsed)
}

// PasskeySignInName returns the stored name of the account a
// discoverable sign-in's answer names by its user handle, nothing of the
// answer checked yet: the caller pins that account's sessions
// (cloakroom.Manager.Pin) before [Service.PasskeyLogin] checks the
// answer, as a password login is pinned before the password is, so that
// a revocation landing during the check fails the admission. The name is
// the one to pin only if PasskeyLogin then signs in that same account.
// An answer that names no account is ErrInvalidPasskey, as PasskeyLogin
// would answer it.
func (s *Service) PasskeySignInName(ctx context.Context, response []byte) (string, error) {
	if _, err := s.relyingParty(); err != nil {
		return "", err
	}
	if len(response) > MaxPasskeyResponse {
		return "", fmt.Errorf("%w: the answer is too long", ErrInvalidPasskey)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrInvalidPasskey, protocolReason(err))
	}
	name := string(parsed.Response.UserHandle)
	if ValidateName(name) != nil {
		return "", fmt.Errorf("%w: the user handle names no account", ErrInvalidPasskey)
	}
	rec, err := s.store.Get(ctx, name)
	if errors.Is(err, ErrNoSuchUser) {
		return "", fmt.Errorf("%w: the user handle names no account", ErrInvalidPasskey)
	}
	if err != nil {
		return "", err
	}
	return rec.Name, nil
}

// openAssertion reads a sign-in's ceremony state (for user, "" for a
// discoverable one) and the authenticator's answer.
func (s *Service) openAssertion(state []byte, user string, response []byte) (ceremonyState, *protocol.ParsedCredentialAssertionData, *webauthn.WebAuthn, error) {
	rp, err := s.relyingParty()
	if err != nil {
		return ceremonyState{}, nil, nil, err
	}
	st, err := openCeremony(state, user)
	if err != nil {
		return ceremonyState{}, nil, nil, err
	}
	if len(response) > MaxPasskeyResponse {
		return ceremonyState{}, nil, nil, fmt.Errorf("%w: the answer is too long", ErrInvalidPasskey)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return ceremonyState{}, nil, nil, fmt.Errorf("%w: %s", ErrInvalidPasskey, protocolReason(err))
	}
	return st, parsed, rp, nil
}

// assert is what both passkey sign-ins end with: validate checks the
// answer against the account it reads (a refusal wraps
// ErrInvalidPasskey, anything else is an outage), then the sign count
// must have grown and the new count, flags and last use are recorded
// with one compare-and-swap; a change that raced is read and checked
// again.
func (s *Service) assert(ctx context.Context, validate func() (*passkeyUser, *webauthn.Credential, error),
	parsed *protocol.ParsedCredentialAssertionData) (PasskeyLoginResult, error) {
	for range 3 {
		found, cred, err := validate()
		if err != nil {
			return PasskeyLoginResult{}, err
		}
		rec, keys := found.rec, found.keys
		if cred.Authenticator.CloneWarning {
			s.logger.WarnContext(ctx, "accounts: passkey sign-in refused: sign count did not increase", "user", rec.Name,
				"passkey", credentialID(cred.ID), "count", parsed.Response.AuthenticatorData.Counter)
			return PasskeyLoginResult{}, ErrSignCountWentBack
		}
		i := slices.IndexFunc(keys.Keys, func(k storedPasskey) bool { return bytes.Equal(k.Credential.ID, cred.ID) })
		if i < 0 { // validation found it in the same list
			return PasskeyLoginResult{}, fmt.Errorf("%w: unknown passkey", ErrInvalidPasskey)
		}
		keys.Keys = slices.Clone(keys.Keys)
		k := keys.Keys[i]
		k.Credential.Authenticator.SignCount = cred.Authenticator.SignCount
		k.Credential.Flags = cred.Flags
		k.LastUsed = s.now().Unix()
		keys.Keys[i] = k
		encoded := keys.encode()
		_, err = s.store.Update(ctx, rec.Name, Change{Passkeys: &encoded, IfPasskeys: &rec.Passkeys})
		if errors.Is(err, ErrConflict) {
			continue // another sign-in or a change raced: check again on the new record
		}
		if errors.Is(err, ErrNoSuchUser) {
			return PasskeyLoginResult{}, fmt.Errorf("%w: the account is gone", ErrInvalidPasskey)
		}
		if err != nil {
			return PasskeyLoginResult{}, err
		}
		flags := parsed.Response.AuthenticatorData.Flags
		res := PasskeyLoginResult{User: rec.User, Passkey: k.info(), UserVerified: flags.HasUserVerified(), Synced: flags.HasBackupEligible()}
		s.logger.InfoContext(ctx, "accounts: passkey accepted", "user", rec.Name, "passkey", res.Passkey.ID,
			"user_verified", res.UserVerified, "synced", res.Synced)
		return res, nil
	}
	return PasskeyLoginResult{}, fmt.Errorf("accounts: passkeys changed concurrently: %w", ErrConflict)
}

// BeginPasskeySecondFactor starts the passkey step of a login whose
// password was right ([Service.Login] answered ErrSecondFactorRequired,
// or the role requires a factor the account has not enrolled): the
// account's own passkeys are allowed, and user verification is
// preferred, not required: with the password, a key that only tests
// presence is already a second factor. It fails with ErrNoSuchPasskey
// when the account has none.
func (s *Service) BeginPasskeySecondFactor(ctx context.Context, name string) (PasskeyCeremony, error) {
	rp, rec, keys, err := s.passkeyAccount(ctx, name)
	if err != nil {
		return PasskeyCeremony{}, err
	}
	if len(keys.Keys) == 0 {
		return PasskeyCeremony{}, ErrNoSuchPasskey
	}
	assertion, session, err := rp.BeginLogin(passkeyUser{rec: rec, keys: keys},
		webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("accounts: begin passkey second factor: %w", err)
	}
	return s.ceremony(assertion, ceremonyState{User: rec.Name, Session: *session})
}

// PasskeySecondFactorAttempt is the passkey step of a login after a
// right password.
type PasskeySecondFactorAttempt struct {
	Name string
	// State is [BeginPasskeySecondFactor]'s ceremony state; Response the
	// authenticator's answer (the PublicKeyCredential as JSON).
	State, Response []byte
	ClientIP        string
	Devices         []string
	// PasswordChangedAt is the account's when the password was checked:
	// a change since fails the attempt.
	PasswordChangedAt time.Time
	// Factor is the [SecondFactorRequiredError]'s Factor, "" when the
	// account had no TOTP factor then (a role's enrolment): the attempt
	// fails unless the account's factor is still that one.
	Factor string
}

// VerifyPasskeySecondFactor completes a login whose password was right
// with one of the account's passkeys. It is throttled like
// [Service.VerifySecondFactor], on the passwords' counters: a refused
// passkey (ErrInvalidPasskey, ErrSignCountWentBack) counts as a failure,
// an accepted one clears them and issues the device token. An account
// that changed since its password was checked (disabled, deleted, new
// password, factor reset or enrolled) is ErrInvalidCredentials.
func (s *Service) VerifyPasskeySecondFactor(ctx context.Context, a PasskeySecondFactorAttempt) (PasskeyLoginResult, error) {
	if ValidateName(a.Name) != nil {
		return PasskeyLoginResult{}, ErrInvalidCredentials
	}
	st, parsed, rp, err := s.openAssertion(a.State, a.Name, a.Response)
	if err != nil {
		return PasskeyLoginResult{}, err
	}
	key, err := s.deviceKey(ctx)
	if err != nil {
		return PasskeyLoginResult{}, err
	}
	rec, err := s.store.Get(ctx, a.Name)
	if errors.Is(err, ErrNoSuchUser) {
		return PasskeyLoginResult{}, ErrInvalidCredentials
	}
	if err != nil {
		return PasskeyLoginResult{}, err
	}
	now := s.now()
	device, keys := s.throttleKeys(key, rec, a.ClientIP, a.Devices, now)
	wait, err := s.throttleStore.Begin(ctx, now, keys)
	if err != nil {
		return PasskeyLoginResult{}, fmt.Errorf("accounts: throttle: %w", err)
	}
	ip := clientKey(a.ClientIP)
	if wait > 0 {
		s.logger.WarnContext(ctx, "accounts: second factor throttled", "user", rec.Name, "client", ip, "known_device", device != nil, "retry_after", wait)
		return PasskeyLoginResult{}, &ThrottledError{RetryAfter: wait}
	}
	first := true
	res, err := s.assert(ctx, func() (*passkeyUser, *webauthn.Credential, error) {
		if !first { // a change raced: read the account again
			if rec, err = s.store.Get(ctx, a.Name); errors.Is(err, ErrNoSuchUser) {
				return nil, nil, ErrInvalidCredentials
			} else if err != nil {
				return nil, nil, err
			}
		}
		first = false
		if rec.Disabled || !rec.PasswordChangedAt.Equal(a.PasswordChangedAt) || factorID(rec.SecondFactor) != a.Factor {
			return nil, nil, fmt.Errorf("%w: the account changed since its password was checked", ErrInvalidCredentials)
		}
		pk, err := decodePasskeys(rec.Passkeys)
		if err != nil {
			return nil, nil, err
		}
		u := &passkeyUser{rec: rec, keys: pk}
		cred, err := rp.ValidateLogin(*u, st.Session, parsed)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s", ErrInvalidPasskey, protocolReason(err))
		}
		return u, cred, nil
	}, parsed)
	if err != nil {
		if !errors.Is(err, ErrInvalidPasskey) && !errors.Is(err, ErrInvalidCredentials) {
			// No verdict: take back the failure charged.
			if err := s.throttleStore.Refund(context.WithoutCancel(ctx), s.now(), keys); err != nil {
				s.logger.WarnContext(ctx, "accounts: throttle refund failed", "err", err)
			}
		}
		s.logger.InfoContext(ctx, "accounts: second factor failed", "user", rec.Name, "factor", "passkey", "reason", err.Error(), "client", ip, "known_device", device != nil)
		return PasskeyLoginResult{}, err
	}
	if err := s.throttleStore.Reset(ctx, keys); err != nil {
		s.logger.WarnContext(ctx, "accounts: throttle reset failed", "err", err)
	}
	s.logger.InfoContext(ctx, "accounts: login succeeded", "user", rec.Name, "client", ip, "known_device", device != nil, "second_factor", "passkey")
	res.Devices = s.deviceTokens(key, res.User, device, a.Devices)
	return res, nil
}

// protocolReason is a WebAuthn library error as a short reason for logs
// and messages, without the library's debugging details.
func protocolReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return err.Error()
}

// FactorsReset is what [Service.ResetFactors] removed.
type FactorsReset struct {
	// TOTP: the authenticator app and its recovery codes.
	TOTP bool `json:"totp"`
	// Passkeys is how many passkeys were removed.
	Passkeys int `json:"passkeys"`
}

// Any reports whether anything was removed.
func (r FactorsReset) Any() bool { return r.TOTP || r.Passkeys > 0 }

// ResetFactors removes every factor of name besides the password: the
// TOTP factor, its recovery codes and every passkey, in one change of
// the record (a lost or stolen phone may hold a synced passkey as well
// as the app). The user signs in with the password alone until they enrol
// again (or is sent to enrolment, if their role requires a factor). It
// ends no session; every sign-in waiting between its factors fails.
func (s *Service) ResetFactors(ctx context.Context, name string) (FactorsReset, error) {
	if err := ValidateName(name); err != nil {
		return FactorsReset{}, err
	}
	for range 3 {
		rec, err := s.store.Get(ctx, name)
		if err != nil {
			return FactorsReset{}, err
		}
		keys, err := decodePasskeys(rec.Passkeys)
		if err != nil {
			keys = storedPasskeys{} // unreadable: removed all the same
		}
		res := FactorsReset{TOTP: rec.SecondFactor != "", Passkeys: len(keys.Keys)}
		if rec.SecondFactor == "" && rec.Passkeys == "" {
			return res, nil
		}
		_, err = s.store.Update(ctx, rec.Name, Change{
			SecondFactor: ptr(""), IfSecondFactor: &rec.SecondFactor,
			Passkeys: ptr(""), IfPasskeys: &rec.Passkeys,
		})
		if errors.Is(err, ErrConflict) {
			continue // a sign-in or an enrolment raced: read again
		}
		if err != nil {
			return FactorsReset{}, err
		}
		s.logger.InfoContext(ctx, "accounts: factors reset", "user", rec.Name, "totp", res.TOTP, "passkeys", res.Passkeys)
		return res, nil
	}
	return FactorsReset{}, fmt.Errorf("accounts: factors changed concurrently: %w", ErrConflict)
}
