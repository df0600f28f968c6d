package cli

import (
	"fmt"
	"strings"

	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/vault"
)

// vaultSettings are the settings of the token vault (docs/migrate.md).
var vaultSettings = []*setting{
	{"vault", "PREFIX", "put the --upstream route with this prefix in vault mode (repeatable): the app's own JWT is kept in the session, never in the browser", func(c *Config) any { return &c.Vault }},
	{"vault-keys-file", "FILE", "key file sealing vaulted tokens: lines \"<key id> <base64 32 bytes>\", the sealing key first (not world-readable)", func(c *Config) any { return &c.VaultKeysFile }},
	{"vault-capture", "'METHOD PATH FIELD'", "a request whose 2xx JSON answer carries the token (repeatable), e.g. 'POST /api/users/login user.token'", func(c *Config) any { return &c.VaultCapture }},
	{"vault-token-path", "FIELD", "more JSON fields of any answer that may carry a refreshed token (repeatable), e.g. data.jwt", func(c *Config) any { return &c.VaultTokenPath }},
	{"vault-user-claim", "CLAIM", "claim of the token naming the session's user", func(c *Config) any { return &c.VaultUserClaim }},
	{"vault-header", "'HEADER: SCHEME'", "how the backend wants its token, e.g. 'Authorization: Token'; 'X-Access-Token:' for a bare token", func(c *Config) any { return &c.VaultHeader }},
	{"vault-drop-field", "", "remove the token's field from answers instead of replacing it with a placeholder", func(c *Config) any { return &c.VaultDropField }},
	{"vault-cookie-only", "PREFIX", "vault route attaching the token on the session cookie alone, without the placeholder (repeatable)", func(c *Config) any { return &c.VaultCookieOnly }},
	{"vault-end-forgotten", "PREFIX", "vault route whose session ends at the SPA's first same-origin call without the placeholder, after a logout that only clears its storage (repeatable)", func(c *Config) any { return &c.VaultEndForgotten }},
	{"vault-strip-param", "NAME", "query parameter or form field the backend takes a token from, removed from every request (repeatable; access_token always)", func(c *Config) any { return &c.VaultStripParam }},
	{"vault-logout", "'METHOD PATH'", "the app's own logout request; it ends the session (repeatable)", func(c *Config) any { return &c.VaultLogout }},
}

// vaultPlan is the checked vault configuration.
type vaultPlan struct {
	routes []vault.Route
	keys   *seal.Keyring
}

// validateVault checks the vault settings against the proxy routes.
func validateVault(cfg Config, routes []proxy.Route) (*vaultPlan, []error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	if len(cfg.Vault) == 0 {
		def := defaultConfig()
		if cfg.VaultKeysFile != "" || len(cfg.VaultCapture) > 0 || len(cfg.VaultLogout) > 0 || len(cfg.VaultCookieOnly) > 0 || len(cfg.VaultEndForgotten) > 0 || len(cfg.VaultTokenPath) > 0 ||
			len(cfg.VaultStripParam) > 0 || cfg.VaultDropField || cfg.VaultUserClaim != def.VaultUserClaim || cfg.VaultHeader != def.VaultHeader {
			bad("--vault-* settings given without --vault PREFIX")
		}
		return nil, problems
	}
	vp := &vaultPlan{}
	if cfg.VaultKeysFile == "" {
		bad("--vault needs --vault-keys-file (see docs/migrate.md for generating one)")
	} else if k, err := seal.Load(cfg.VaultKeysFile); err != nil {
		bad("--vault-keys-file: %w", err)
	} else {
		vp.keys = k
	}
	header, scheme, noScheme, err := vault.ParseHeader(cfg.VaultHeader)
	if err != nil {
		bad("--vault-header: %w", err)
	}
	var tokenPaths []vault.JSONPath
	for _, s := range cfg.VaultTokenPath {
		p, err := vault.ParseJSONPath(s)
		if err != nil {
			bad("--vault-token-path: %w", err)
			continue
		}
		tokenPaths = append(tokenPaths, p)
	}
	byPrefix := map[string]*vault.Route{}
	var order []string
	for _, prefix := range cfg.Vault {
		prefix, ok := routePrefix(routes, prefix)
		if !ok {
			bad("--vault %q: no --upstream route has this prefix", prefix)
			continue
		}
		if byPrefix[prefix] != nil {
			bad("--vault %q given twice", prefix)
			continue
		}
		byPrefix[prefix] = &vault.Route{
			Prefix: prefix, TokenPaths: tokenPaths, UserClaim: cfg.VaultUserClaim,
			Header: header, Scheme: scheme, NoScheme: noScheme,
			DropField: cfg.VaultDropField, StripParams: cfg.VaultStripParam,
		}
		order = append(order, prefix)
	}
	// place finds the vault route a --vault-capture or --vault-logout value
	// belongs to, the one whose prefix is the longest its path starts with;
	// a value that did not parse or belongs to none is a problem.
	place := func(flag, value string, e vault.Endpoint, err error) *vault.Route {
		if err != nil {
			bad("%s: %w", flag, err)
			return nil
		}
		var best *vault.Route
		for p, r := range byPrefix {
			if strings.HasPrefix(e.Path, p) && (best == nil || len(p) > len(best.Prefix)) {
				best = r
			}
		}
		if best == nil {
			bad("%s %q: not under a --vault prefix", flag, value)
		}
		return best
	}
	for _, s := range cfg.VaultCapture {
		c, err := vault.ParseCapture(s)
		if r := place("--vault-capture", s, c.Endpoint, err); r != nil {
			r.Capture = append(r.Capture, c)
		}
	}
	for _, s := range cfg.VaultLogout {
		e, err := vault.ParseEndpoint(s)
		if r := place("--vault-logout", s, e, err); r != nil {
			r.Logout = append(r.Logout, e)
		}
	}
	// The per-route switches name a --vault prefix, with or without its
	// trailing slash.
	for _, sw := range []struct {
		flag     string
		prefixes []string
		set      func(*vault.Route)
	}{
		{"--vault-cookie-only", cfg.VaultCookieOnly, func(r *vault.Route) { r.AttachOnCookie = true }},
		{"--vault-end-forgotten", cfg.VaultEndForgotten, func(r *vault.Route) { r.EndForgotten = true }},
	} {
		for _, prefix := range sw.prefixes {
			r := byPrefix[prefix]
			if r == nil {
				r = byPrefix[prefix+"/"]
			}
			if r == nil {
				bad("%s %q: not a --vault prefix", sw.flag, prefix)
				continue
			}
			sw.set(r)
		}
	}
	for _, prefix := range order {
		r := byPrefix[prefix]
		if len(r.Capture) == 0 {
			bad("--vault %q: no --vault-capture request under it (the app's login, e.g. 'POST %susers/login user.token')", prefix, prefix)
		}
		vp.routes = append(vp.routes, *r)
	}
	return vp, problems
}

// routePrefix returns the prefix of the --upstream route that prefix
// names, with or without its trailing "/", and whether there is one.
func routePrefix(routes []proxy.Route, prefix string) (string, bool) {
	for _, r := range routes {
		if r.Prefix == prefix || r.Prefix == prefix+"/" {
			return r.Prefix, true
		}
	}
	return prefix, false
}
