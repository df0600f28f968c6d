package cli

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/cloakroom/cloakroom/forwardauth"
)

// forwardAuthAudience is the internal JWT's aud on forward-auth answers,
// so a token minted for an app behind a proxy is not accepted by an
// --upstream route, nor the other way round.
const forwardAuthAudience = "cloakroom-forward-auth"

// forwardAuthConfig holds the forward-auth settings; Config embeds it.
type forwardAuthConfig struct {
	ForwardAuthProxies []string
	ForwardAuthHosts   []string
	ForwardAuthPublic  []string
	ForwardAuthRoles   []string
}

var forwardAuthSettings = []*setting{
	{"forward-auth-proxy", "CIDR", "proxy (address or prefix) whose forward-auth decision requests are answered (repeatable); others get 403 (docs/deploy.md)", func(c *Config) any { return &c.ForwardAuthProxies }},
	{"forward-auth-host", "HOST", "host whose requests a proxy asks about at /auth/forward/ (repeatable); every path needs a session unless made public", func(c *Config) any { return &c.ForwardAuthHosts }},
	{"forward-auth-public", "HOST/PREFIX", "forward-auth path prefix reachable without a session (repeatable), e.g. app.example.com/assets/", func(c *Config) any { return &c.ForwardAuthPublic }},
	{"forward-auth-role", "HOST/PREFIX=ROLE", "forward-auth path prefix that needs ROLE (repeatable; every role named for a prefix is needed), e.g. app.example.com/admin/=admin", func(c *Config) any { return &c.ForwardAuthRoles }},
}

func init() { settings = append(settings, forwardAuthSettings...) }

// validateForwardAuth turns the forward-auth settings into the handler's
// configuration, or nil when none is set.
func validateForwardAuth(cfg Config) (*forwardauth.Config, []error) {
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }
	anyRule := len(cfg.ForwardAuthHosts)+len(cfg.ForwardAuthPublic)+len(cfg.ForwardAuthRoles) > 0
	if !anyRule {
		if len(cfg.ForwardAuthProxies) > 0 {
			bad("--forward-auth-proxy is set but no --forward-auth-host, --forward-auth-public or --forward-auth-role is")
		}
		return nil, problems
	}
	fa := &forwardauth.Config{Audience: forwardAuthAudience}
	if len(cfg.ForwardAuthProxies) == 0 {
		bad("forward auth needs --forward-auth-proxy: decisions are answered to the proxies' addresses only")
	}
	for _, v := range cfg.ForwardAuthProxies {
		if p, err := netip.ParsePrefix(v); err == nil {
			fa.Proxies = append(fa.Proxies, p.Masked())
		} else if a, err := netip.ParseAddr(v); err == nil {
			fa.Proxies = append(fa.Proxies, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		} else {
			bad("--forward-auth-proxy %q: want an address or a CIDR prefix such as 10.0.0.0/8", v)
		}
	}
	// One rule per host and prefix: roles named for the same prefix add up.
	index := map[[2]string]int{}
	rule := func(flag, value string) *forwardauth.Rule {
		host, prefix, err := forwardauth.ParseHostPath(value)
		if err != nil {
			bad("--%s %q: %w", flag, value, err)
			return nil
		}
		key := [2]string{host, prefix}
		if i, ok := index[key]; ok {
			return &fa.Rules[i]
		}
		index[key] = len(fa.Rules)
		fa.Rules = append(fa.Rules, forwardauth.Rule{Host: host, Prefix: prefix})
		return &fa.Rules[len(fa.Rules)-1]
	}
	for _, v := range cfg.ForwardAuthHosts {
		if strings.Contains(v, "/") {
			bad("--forward-auth-host %q: want a host alone; use --forward-auth-public or --forward-auth-role for paths", v)
			continue
		}
		rule("forward-auth-host", v)
	}
	for _, v := range cfg.ForwardAuthPublic {
		if r := rule("forward-auth-public", v); r != nil {
			r.Public = true
		}
	}
	for _, v := range cfg.ForwardAuthRoles {
		target, role, ok := strings.Cut(v, "=")
		if !ok || role == "" || strings.ContainsAny(role, ", ") {
			bad("--forward-auth-role %q: want HOST/PREFIX=ROLE, one role without commas or spaces", v)
			continue
		}
		if r := rule("forward-auth-role", target); r != nil && !slices.Contains(r.Roles, role) {
			r.Roles = append(r.Roles, role)
		}
	}
	for _, r := range fa.Rules {
		if r.Public && len(r.Roles) > 0 {
			bad("%s%s is both --forward-auth-public and --forward-auth-role", r.Host, r.Prefix)
		}
	}
	return fa, problems
}
