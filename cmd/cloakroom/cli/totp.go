package cli

import (
	"fmt"

	"github.com/cloakroom/cloakroom/internal/seal"
)

// totpConfig holds the settings of local accounts' second factor; Config
// embeds it.
type totpConfig struct {
	TOTPKeysFile string
}

var totpSettings = []*setting{
	{"totp-keys-file", "FILE", "keys sealing local accounts' TOTP secrets at rest, one \"<id> <base64 32 bytes>\" per line, the first seals; without it no authenticator app can be set up (default: none)", func(c *Config) any { return &c.TOTPKeysFile }},
}

func init() { settings = append(settings, totpSettings...) }

// validateTOTP loads the TOTP key file, if one is named: nil without.
func validateTOTP(cfg Config) (*seal.Keyring, []error) {
	if cfg.TOTPKeysFile == "" {
		return nil, nil
	}
	keys, err := seal.Load(cfg.TOTPKeysFile)
	if err != nil {
		return nil, []error{fmt.Errorf("--totp-keys-file: %w", err)}
	}
	return keys, nil
}
