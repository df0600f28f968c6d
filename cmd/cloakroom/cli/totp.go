package cli

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/cloakroom/cloakroom/internal/seal"
)

// totpConfig holds the settings of local accounts' second factor; Config
// embeds it.
type totpConfig struct {
	TOTPKeysFile        string
	RequireSecondFactor []string
	RequireFactorRoutes []string
}

var totpSettings = []*setting{
	{"totp-keys-file", "FILE", "keys sealing local accounts' TOTP secrets at rest, one \"<id> <base64 32 bytes>\" per line, the first seals; without it no authenticator app can be set up (default: none)", func(c *Config) any { return &c.TOTPKeysFile }},
	{"require-second-factor", "ROLE", "users with this ROLE (repeatable) sign in only with a second factor: local accounts without one must set up an authenticator app first, provider users need an amr of otp, hwk, swk or mfa; needs --totp-keys-file (default: none)", func(c *Config) any { return &c.RequireSecondFactor }},
	{"require-factor-route", "PREFIX", "requests under PREFIX (repeatable, e.g. /api/admin/) need a session signed in with a second factor (a code, a recovery code, a passkey, or a provider's amr otp, hwk, swk or mfa), whatever the role; others get 403 second_factor_required (default: none)", func(c *Config) any { return &c.RequireFactorRoutes }},
}

func init() { settings = append(settings, totpSettings...) }

// validateTOTP loads the TOTP key file, if one is named: nil without.
func validateTOTP(cfg Config) (*seal.Keyring, []error) {
	var problems []error
	for _, role := range cfg.RequireSecondFactor {
		if len(role) > 128 || strings.IndexFunc(role, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			problems = append(problems, fmt.Errorf("--require-second-factor %q: a role is 1 to 128 characters without spaces", role))
		}
	}
	for _, prefix := range cfg.RequireFactorRoutes {
		if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, " \t\r\n?#") {
			problems = append(problems, fmt.Errorf("--require-factor-route %q: want a path prefix starting with /, e.g. /api/admin/", prefix))
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	if cfg.TOTPKeysFile == "" {
		if len(cfg.RequireSecondFactor) > 0 {
			// Local accounts of those roles could never enrol: refused
			// here rather than locked out at their first sign-in.
			return nil, []error{fmt.Errorf("--require-second-factor needs --totp-keys-file: local accounts of roles %s must be able to set up an authenticator app", strings.Join(cfg.RequireSecondFactor, ", "))}
		}
		return nil, nil
	}
	keys, err := seal.Load(cfg.TOTPKeysFile)
	if err != nil {
		return nil, []error{fmt.Errorf("--totp-keys-file: %w", err)}
	}
	return keys, nil
}
