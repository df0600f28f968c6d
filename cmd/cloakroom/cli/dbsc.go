package cli

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/gateway"
)

// dbscConfig holds the settings of device-bound sessions; Config embeds
// it.
type dbscConfig struct {
	DBSCKeyFile         string
	DBSCCookieLifetime  time.Duration
	RequireBoundSession []string
	RequireBoundPath    []string
}

var dbscSettings = []*setting{
	{"dbsc-key-file", "FILE", "turns on device-bound sessions (DBSC): the key MACing the short-lived bound cookies, one line of standard base64 of at least 32 random bytes (openssl rand -base64 32), the same on every node, not readable by other users (default: none, no binding)", func(c *Config) any { return &c.DBSCKeyFile }},
	{"dbsc-cookie-lifetime", "DURATION", "how long a bound cookie works, and so a copied cookie jar; at least 10s (default 5m)", func(c *Config) any { return &c.DBSCCookieLifetime }},
	{"require-bound-session", "ROLE", "sessions of users with this ROLE (repeatable) must be bound to their browser: browsers without DBSC cannot use them; needs --dbsc-key-file (default: none)", func(c *Config) any { return &c.RequireBoundSession }},
	{"require-bound-path", "PREFIX", "requests under this path PREFIX (repeatable), e.g. /admin/, need a bound session: browsers without DBSC cannot use them; needs --dbsc-key-file (default: none)", func(c *Config) any { return &c.RequireBoundPath }},
}

func init() { settings = append(settings, dbscSettings...) }

// dbscPlan is device binding as validated: the binder's configuration and
// what it requires.
type dbscPlan struct {
	binder  dbsc.Config
	require gateway.BindingRequirement
}

// validateDBSC reads the DBSC key file, if one is named: nil without.
// Requiring bound sessions without binding is refused (fail closed).
func validateDBSC(cfg Config) (*dbscPlan, []error) {
	var problems []error
	for _, role := range cfg.RequireBoundSession {
		if role == "" || len(role) > 128 || strings.IndexFunc(role, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			problems = append(problems, fmt.Errorf("--require-bound-session %q: a role is 1 to 128 characters without spaces", role))
		}
	}
	for _, prefix := range cfg.RequireBoundPath {
		if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "?# \t") {
			problems = append(problems, fmt.Errorf("--require-bound-path %q: want an absolute path prefix such as /admin/", prefix))
		}
	}
	if cfg.DBSCCookieLifetime != 0 && (cfg.DBSCCookieLifetime < dbsc.MinCookieLifetime || cfg.DBSCCookieLifetime%time.Second != 0) {
		problems = append(problems, fmt.Errorf("--dbsc-cookie-lifetime %v: want whole seconds, at least %v", cfg.DBSCCookieLifetime, dbsc.MinCookieLifetime))
	}
	if cfg.DBSCKeyFile == "" {
		switch {
		case len(cfg.RequireBoundSession) > 0 || len(cfg.RequireBoundPath) > 0:
			problems = append(problems, fmt.Errorf("--require-bound-session and --require-bound-path need --dbsc-key-file: without device binding no session could ever be bound"))
		case cfg.DBSCCookieLifetime != 0:
			problems = append(problems, fmt.Errorf("--dbsc-cookie-lifetime is set but --dbsc-key-file is not"))
		}
		return nil, problems
	}
	key, err := loadDBSCKey(cfg.DBSCKeyFile)
	if err != nil {
		problems = append(problems, fmt.Errorf("--dbsc-key-file: %w", err))
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return &dbscPlan{
		binder:  dbsc.Config{Key: key, CookieLifetime: cfg.DBSCCookieLifetime},
		require: gateway.BindingRequirement{Roles: cfg.RequireBoundSession, Paths: cfg.RequireBoundPath},
	}, nil
}

// loadDBSCKey reads the bound cookies' MAC key: one line of standard
// base64 of at least dbsc.MinKeySize bytes ('#' comments and blank lines
// ignored), in a file other users cannot read.
func loadDBSCKey(path string) ([]byte, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	var lines []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		return nil, fmt.Errorf("%s: want one line of base64 (openssl rand -base64 32), found %d", path, len(lines))
	}
	key, err := base64.StdEncoding.DecodeString(lines[0])
	if err != nil || len(key) < dbsc.MinKeySize {
		// The decode error could quote key material: say only what is wrong.
		return nil, fmt.Errorf("%s: the key is not standard base64 of at least %d bytes (openssl rand -base64 32)", path, dbsc.MinKeySize)
	}
	return key, nil
}
