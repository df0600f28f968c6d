package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
)

// oidcConfig holds the settings of sign-in at OpenID providers; Config
// embeds it.
type oidcConfig struct {
	OIDCProviders  []string
	PublicURL      string
	OIDCKeysFile   string
	OIDCRelayToken []string
	OIDCStepUp     []string
}

var oidcSettings = []*setting{
	{"oidc-provider", "SPEC", "sign in at an OpenID provider (repeatable): name=NAME;issuer=URL;client-id=ID;client-secret-file=FILE, optionally ;display-name=TEXT;scopes=openid email profile;allowed-domains=D1 D2;allowed-groups=G1 G2;require-claim=CLAIM=VALUE;auth-param=NAME=VALUE;user-claim=sub;email-claim=email;name-claim=name;groups-claim=groups;token-auth=basic|post (docs/oidc.md)", func(c *Config) any { return &c.OIDCProviders }},
	{"public-url", "URL", "the gateway's external origin, e.g. https://app.example.com; provider redirect URIs are built from it", func(c *Config) any { return &c.PublicURL }},
	{"oidc-keys-file", "FILE", "keys sealing provider tokens at rest, one \"<id> <base64 32 bytes>\" per line, the first seals (may be the --vault-keys-file)", func(c *Config) any { return &c.OIDCKeysFile }},
	{"oidc-relay-token", "PREFIX", "send the user's provider access token to this --upstream prefix as Authorization: Bearer, refreshed server-side (repeatable)", func(c *Config) any { return &c.OIDCRelayToken }},
	{"oidc-step-up", "PREFIX=DURATION", "requests under PREFIX need a login within DURATION, e.g. /api/admin/=10m (repeatable)", func(c *Config) any { return &c.OIDCStepUp }},
}

func init() { settings = append(settings, oidcSettings...) }

// oidcPlan is the validated OIDC configuration.
type oidcPlan struct {
	providers []oidcbff.ProviderConfig
	keys      *seal.Keyring
	relay     []string
	stepUp    []oidcbff.StepUp
}

// validateOIDC checks the OIDC settings and reads the files they name,
// without contacting the providers (serve does, at startup).
func validateOIDC(cfg Config, routes []proxy.Route) (*oidcPlan, []error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if len(cfg.OIDCProviders) == 0 {
		for name, set := range map[string]bool{
			"--public-url": cfg.PublicURL != "", "--oidc-keys-file": cfg.OIDCKeysFile != "",
			"--oidc-relay-token": len(cfg.OIDCRelayToken) > 0, "--oidc-step-up": len(cfg.OIDCStepUp) > 0,
		} {
			if set {
				bad("%s is set but no --oidc-provider is", name)
			}
		}
		return nil, problems
	}
	p := &oidcPlan{}
	names := map[string]bool{}
	for i, spec := range cfg.OIDCProviders {
		pc, secretFile, err := parseProviderSpec(spec)
		if err != nil {
			bad("--oidc-provider #%d: %w", i+1, err)
			continue
		}
		if secretFile != "" {
			data, err := readSecretFile(secretFile)
			if err != nil {
				bad("--oidc-provider %s: client-secret-file: %w", pc.Name, err)
			}
			pc.ClientSecret = strings.TrimSpace(string(data))
		}
		if err := pc.Check(); err != nil {
			for _, e := range flatten(err) {
				bad("--oidc-provider %s: %v", pc.Name, strings.TrimPrefix(e.Error(), oidcbff.ErrInvalidConfig.Error()+": "))
			}
		}
		if names[pc.Name] {
			bad("--oidc-provider %s is given twice", pc.Name)
		}
		names[pc.Name] = true
		p.providers = append(p.providers, pc)
	}
	if err := oidcbff.CheckPublicURL(cfg.PublicURL); err != nil {
		bad("--public-url %q: %w", cfg.PublicURL, err)
	}
	if cfg.OIDCKeysFile == "" {
		bad("--oidc-keys-file is required with --oidc-provider: provider tokens are kept encrypted (create one with a line \"<id> $(head -c 32 /dev/urandom | base64)\")")
	} else if keys, err := seal.Load(cfg.OIDCKeysFile); err != nil {
		bad("--oidc-keys-file: %w", err)
	} else {
		p.keys = keys
	}
	for _, prefix := range cfg.OIDCRelayToken {
		route, ok := routePrefix(routes, prefix)
		if !ok {
			bad("--oidc-relay-token %q is not an --upstream prefix", prefix)
			continue
		}
		if slices.ContainsFunc(cfg.Vault, func(v string) bool { r, _ := routePrefix(routes, v); return r == route }) {
			// serve would attach the app's token there, never relay.
			bad("--oidc-relay-token %q is a --vault route: it carries the app's own token, not the provider's", prefix)
			continue
		}
		p.relay = append(p.relay, strings.TrimSuffix(prefix, "/")+"/")
	}
	for _, rule := range cfg.OIDCStepUp {
		prefix, raw, ok := strings.Cut(rule, "=")
		d, err := time.ParseDuration(raw)
		switch {
		case !ok || !strings.HasPrefix(prefix, "/"):
			bad("--oidc-step-up %q: want PREFIX=DURATION, e.g. /api/admin/=10m", rule)
		case err != nil || d < time.Minute:
			bad("--oidc-step-up %q: the duration must be at least 1m", rule)
		default:
			su := oidcbff.StepUp{Prefix: prefix, MaxAge: d}
			if err := oidcbff.CheckStepUp(gateway.DefaultAuthPrefix, su); err != nil {
				bad("--oidc-step-up %q: %w", rule, err)
				continue
			}
			p.stepUp = append(p.stepUp, su)
		}
	}
	return p, problems
}

// maxProviderSpec bounds one --oidc-provider value.
const maxProviderSpec = 4096

// parseProviderSpec parses the --oidc-provider syntax: key=value fields
// separated by ';', list values separated by spaces. It returns the
// provider and the client secret's file.
func parseProviderSpec(spec string) (oidcbff.ProviderConfig, string, error) {
	var pc oidcbff.ProviderConfig
	var secretFile string
	if len(spec) > maxProviderSpec {
		return pc, "", fmt.Errorf("longer than %d bytes", maxProviderSpec)
	}
	seen := map[string]bool{}
	for field := range strings.SplitSeq(spec, ";") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		key, value, ok := strings.Cut(field, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || value == "" {
			return pc, "", fmt.Errorf("field %q is not key=value", safeField(field))
		}
		if seen[key] && key != "require-claim" && key != "auth-param" {
			return pc, "", fmt.Errorf("%s is given twice", safeField(key))
		}
		seen[key] = true
		if err := setProviderField(&pc, &secretFile, key, value); err != nil {
			return pc, "", err
		}
	}
	var missing []string
	for _, k := range []string{"name", "issuer", "client-id", "client-secret-file"} {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return pc, "", fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return pc, secretFile, nil
}

// providerText and providerLists are the --oidc-provider fields that set
// one field of the provider each: as written, or split at spaces.
var (
	providerText = map[string]func(*oidcbff.ProviderConfig) *string{
		"name":         func(pc *oidcbff.ProviderConfig) *string { return &pc.Name },
		"display-name": func(pc *oidcbff.ProviderConfig) *string { return &pc.DisplayName },
		"issuer":       func(pc *oidcbff.ProviderConfig) *string { return &pc.Issuer },
		"client-id":    func(pc *oidcbff.ProviderConfig) *string { return &pc.ClientID },
		"user-claim":   func(pc *oidcbff.ProviderConfig) *string { return &pc.UserClaim },
		"email-claim":  func(pc *oidcbff.ProviderConfig) *string { return &pc.EmailClaim },
		"name-claim":   func(pc *oidcbff.ProviderConfig) *string { return &pc.NameClaim },
		"groups-claim": func(pc *oidcbff.ProviderConfig) *string { return &pc.GroupsClaim },
		"token-auth":   func(pc *oidcbff.ProviderConfig) *string { return &pc.TokenAuth },
	}
	providerLists = map[string]func(*oidcbff.ProviderConfig) *[]string{
		"scopes":          func(pc *oidcbff.ProviderConfig) *[]string { return &pc.Scopes },
		"allowed-domains": func(pc *oidcbff.ProviderConfig) *[]string { return &pc.AllowedDomains },
		"allowed-groups":  func(pc *oidcbff.ProviderConfig) *[]string { return &pc.AllowedGroups },
	}
)

// setProviderField sets what the --oidc-provider field key says: a field
// of pc, or the client secret's file.
func setProviderField(pc *oidcbff.ProviderConfig, secretFile *string, key, value string) error {
	if field, ok := providerText[key]; ok {
		*field(pc) = value
		return nil
	}
	if field, ok := providerLists[key]; ok {
		*field(pc) = strings.Fields(value)
		return nil
	}
	switch key {
	case "client-secret-file":
		*secretFile = value
		return nil
	case "client-secret":
		return errors.New("client-secret does not belong on the command line or in the config file; use client-secret-file")
	case "require-claim":
		return addPair(&pc.RequiredClaims, key, value, "CLAIM=VALUE")
	case "auth-param":
		return addPair(&pc.AuthParams, key, value, "NAME=VALUE")
	}
	return fmt.Errorf("unknown field %q", safeField(key))
}

// addPair parses value as NAME=VALUE (both non-empty) into *m, creating
// the map on first use; field and form name the --oidc-provider field in
// the error.
func addPair(m *map[string]string, field, value, form string) error {
	name, v, ok := strings.Cut(value, "=")
	if !ok || name == "" || v == "" {
		return fmt.Errorf("%s %q is not %s", field, safeField(value), form)
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[name] = v
	return nil
}

// safeField shortens and quotes user input for an error message.
func safeField(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}
