package cli

import (
	"fmt"

	"github.com/cloakroom/cloakroom/accounts"
)

// passkeyConfig holds the settings of local accounts' passkeys; Config
// embeds it.
type passkeyConfig struct {
	WebAuthnRPID    string
	WebAuthnOrigins []string
}

var passkeySettings = []*setting{
	{"webauthn-rp-id", "DOMAIN", "relying-party ID of local accounts' passkeys: a registrable domain the gateway's origins lie in, e.g. example.com; with --webauthn-origin it turns passkeys on (default: none, passkeys off)", func(c *Config) any { return &c.WebAuthnRPID }},
	{"webauthn-origin", "ORIGIN", "origin allowed to use passkeys, https://host[:port] within --webauthn-rp-id (repeatable; required with it)", func(c *Config) any { return &c.WebAuthnOrigins }},
}

func init() { settings = append(settings, passkeySettings...) }

// validatePasskeys checks the relying party: the zero config (passkeys
// off) without either flag.
func validatePasskeys(cfg Config) (accounts.PasskeyConfig, []error) {
	pc := accounts.PasskeyConfig{RPID: cfg.WebAuthnRPID, Origins: cfg.WebAuthnOrigins}
	if err := pc.Check(); err != nil {
		return accounts.PasskeyConfig{}, []error{fmt.Errorf("--webauthn-rp-id/--webauthn-origin: %w", err)}
	}
	return pc, nil
}
