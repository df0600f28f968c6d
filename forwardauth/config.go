package forwardauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// ErrInvalidConfig wraps every problem [New] finds in a [Config].
var ErrInvalidConfig = errors.New("forwardauth: invalid configuration")

// ErrInvalidRule wraps every problem [ParseHostPath] finds.
var ErrInvalidRule = errors.New("invalid forward-auth rule")

// Config configures a [Handler]. Sessions, Proxies and Rules are required;
// every other field states its default.
type Config struct {
	// Sessions loads and checks sessions: the same manager as the
	// gateway's, so the idle and absolute timeouts, generations, global
	// revocation and cross-origin rules are the core's. Required.
	Sessions *cloakroom.Manager
	// Proxies are the addresses whose forwarded method, host and URI are
	// believed. A decision request from any other address is refused with
	// 403 before any session is looked up. Required: no default trusts
	// anyone.
	Proxies []netip.Prefix
	// Rules say which hosts are protected and which of their paths are
	// public or need roles. A host no rule names is refused (403), so a
	// sign-in redirect never names a host that was not configured.
	// Required: at least one.
	Rules []Rule
	// Signer, when set, adds the short-lived internal JWT of a signed-in
	// user to every allowing answer as "Authorization: Bearer <jwt>".
	// Default nil: the Authorization answer header is sent empty.
	Signer *upstreamjwt.Signer
	// Audience is the JWT's "aud". Default "": the signer's own.
	Audience string
	// AuthPrefix is where the gateway's sign-in pages live, on the same
	// origin through the user's proxy. Default "/auth".
	AuthPrefix string
	// Now is the clock for the JWT's times. Default time.Now.
	Now func() time.Time
	// Logger receives a line per refused decision (never a cookie or
	// token). Default slog.Default().
	Logger *slog.Logger
}

// Rule is one host and path prefix. For a request the rule of its host
// with the longest prefix that the path lies under decides; a path of a
// configured host under no prefix needs a signed-in session.
type Rule struct {
	// Host is the request's host, compared without case. A host without
	// a port matches the host on any port; with one, only that port.
	Host string
	// Prefix is a path prefix, on a segment boundary ("/admin" covers
	// /admin and /admin/x, not /administrator). Default "/".
	Prefix string
	// Public lets requests through without a session (with the user's
	// identity when there is one).
	Public bool
	// Roles must all be held by the signed-in user (their session's
	// roles, sent upstream as X-Forwarded-Groups); missing ones get 403.
	Roles []string
}

// ParseHostPath splits a command-line "HOST/PREFIX" (or "HOST") value.
func ParseHostPath(value string) (host, prefix string, err error) {
	host, rest, hasPath := strings.Cut(value, "/")
	prefix = "/"
	if hasPath {
		prefix = "/" + rest
	}
	if err := checkHost(host); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrInvalidRule, err)
	}
	if err := checkPrefix(prefix); err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrInvalidRule, err)
	}
	return strings.ToLower(host), prefix, nil
}

func checkHost(host string) error {
	if host == "" {
		return errors.New("the host is empty (want HOST or HOST/PREFIX, such as app.example.com/admin/)")
	}
	name := host
	// Without a colon there is no port to split off (and SplitHostPort
	// would only build an error to say so, on every decision).
	if strings.Contains(host, ":") {
		if h, port, err := net.SplitHostPort(host); err == nil {
			if port == "" {
				return errors.New("the port is empty")
			}
			name = h
		}
	}
	for _, c := range []byte(name) {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == ':'
		if !ok {
			return fmt.Errorf("the host has a character %q no host name has", c)
		}
	}
	return nil
}

func checkPrefix(prefix string) error {
	if !strings.HasPrefix(prefix, "/") {
		return errors.New("the path prefix must start with /")
	}
	if !canonicalPath(prefix) {
		return errors.New("the path prefix must be a plain path (no //, . or .. segments, % escapes or backslashes)")
	}
	return nil
}

// validate checks cfg and fills the defaults into a copy.
func (cfg Config) validate() (Config, error) {
	var problems []error
	if cfg.Sessions == nil {
		problems = append(problems, errors.New("Sessions is required"))
	}
	if len(cfg.Proxies) == 0 {
		problems = append(problems, errors.New("at least one proxy address is required: forwarded requests are believed only from the proxy's addresses"))
	}
	if len(cfg.Rules) == 0 {
		problems = append(problems, errors.New("at least one host rule is required"))
	}
	seen := map[[2]string]int{}
	for i, r := range cfg.Rules {
		if r.Prefix == "" {
			r.Prefix = "/"
		}
		if err := checkHost(r.Host); err != nil {
			problems = append(problems, fmt.Errorf("rule %d: %w", i, err))
		}
		if err := checkPrefix(r.Prefix); err != nil {
			problems = append(problems, fmt.Errorf("rule %d: %w", i, err))
		}
		if r.Public && len(r.Roles) > 0 {
			problems = append(problems, fmt.Errorf("rule %d (%s%s): a public path cannot require roles", i, r.Host, r.Prefix))
		}
		if slices.Contains(r.Roles, "") {
			problems = append(problems, fmt.Errorf("rule %d (%s%s): a role is empty", i, r.Host, r.Prefix))
		}
		key := [2]string{strings.ToLower(r.Host), r.Prefix}
		if j, dup := seen[key]; dup {
			problems = append(problems, fmt.Errorf("rules %d and %d are both for %s%s: merge them", j, i, r.Host, r.Prefix))
		}
		seen[key] = i
	}
	if err := errors.Join(problems...); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.AuthPrefix == "" {
		cfg.AuthPrefix = "/auth"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// canonicalPath reports whether p, a decoded path, is one every server
// reads the same way: clean by the rule the gateway's proxy applies
// (httpx.CleanPath: no empty, "." or ".." segments, "..;" included, no
// backslash, control or lookalike characters), and without a "%". Rules
// are matched on such paths only, so "/public/../admin" and
// "/public/..;/admin" cannot pass as public.
func canonicalPath(p string) bool {
	return httpx.CleanPath(p) && !strings.Contains(p, "%")
}

// decodePath decodes a request's escaped path for matching rules, and
// refuses one that is not canonical or whose escapes hide a slash, a
// backslash, a dot or a percent sign (an upstream could decode them into
// segments the rules never saw).
func decodePath(escaped string) (string, bool) {
	for i := 0; i < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		if i+2 >= len(escaped) {
			return "", false
		}
		switch strings.ToLower(escaped[i+1 : i+3]) {
		case "2f", "5c", "2e", "25":
			return "", false
		}
	}
	decoded, err := url.PathUnescape(escaped)
	if err != nil || !canonicalPath(decoded) {
		return "", false
	}
	return decoded, true
}
