package proxy

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/cloakroom/cloakroom/internal/httpx"
)

// ErrInvalidRoute wraps every problem [ParseRoute] and [New] find in a route.
var ErrInvalidRoute = errors.New("proxy: invalid route")

// maxRouteLength bounds the --upstream flag value.
const maxRouteLength = 2048

// Route sends every request whose path starts with Prefix to Upstream. The
// request path is kept as it is (the prefix is not stripped) and appended to
// Upstream's path, if it has one.
type Route struct {
	// Prefix is a clean absolute path ending in "/", such as "/api/". It
	// also matches the path without its trailing slash ("/api").
	Prefix string
	// Upstream is an http or https URL with a host and no userinfo, query
	// or fragment, such as http://127.0.0.1:9000.
	Upstream *url.URL
	// Audience is the "aud" of the internal JWT sent to this upstream, so
	// a token one upstream received is refused by every other. Default:
	// the prefix ("/api/").
	Audience string
	// Mode is how the route's requests go upstream besides; see [Mode].
	// Default nil: a plain route.
	Mode Mode
}

// ParseRoute parses the "PREFIX=URL" syntax of the --upstream flag, for
// example "/api/=http://127.0.0.1:9000". A prefix without a trailing slash
// gets one.
func ParseRoute(s string) (Route, error) {
	if len(s) > maxRouteLength {
		return Route{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidRoute, maxRouteLength)
	}
	prefix, rawURL, ok := strings.Cut(s, "=")
	if !ok {
		return Route{}, fmt.Errorf("%w: %q is not PREFIX=URL (for example /api/=http://127.0.0.1:9000)", ErrInvalidRoute, s)
	}
	p, err := normalisePrefix(prefix)
	if err != nil {
		return Route{}, err
	}
	u, err := parseUpstream(rawURL)
	if err != nil {
		return Route{}, err
	}
	return Route{Prefix: p, Upstream: u}, nil
}

// String returns the route in the syntax ParseRoute accepts.
func (r Route) String() string {
	if r.Upstream == nil {
		return r.Prefix + "="
	}
	return r.Prefix + "=" + r.Upstream.String()
}

// normalisePrefix checks that p is a clean absolute path made of unreserved
// characters and returns it with a trailing slash.
func normalisePrefix(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: empty prefix (use / to proxy every path)", ErrInvalidRoute)
	}
	if p[0] != '/' {
		return "", fmt.Errorf("%w: prefix %q does not start with /", ErrInvalidRoute, p)
	}
	for i := 0; i < len(p); i++ {
		if !isPrefixByte(p[i]) {
			return "", fmt.Errorf("%w: prefix %q contains %q; allowed are letters, digits and - . _ ~ /", ErrInvalidRoute, p, p[i])
		}
	}
	clean := path.Clean(p) // no trailing slash, except for "/"
	if clean == "/" && p != "/" || p != clean && p != clean+"/" {
		return "", fmt.Errorf("%w: prefix %q is not clean (want %s)", ErrInvalidRoute, p, strings.TrimSuffix(clean, "/")+"/")
	}
	if clean == "/" {
		return "/", nil
	}
	return clean + "/", nil
}

func isPrefixByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '/'
}

// parseUpstream parses and checks an upstream URL.
func parseUpstream(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: empty upstream URL", ErrInvalidRoute)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: upstream %q is not an http or https URL: %v", ErrInvalidRoute, raw, err)
	}
	// The raw string is checked too: url.Parse accepts "http://h/?" and
	// "http://h/#" with an empty query or fragment.
	if strings.ContainsAny(raw, "?#") {
		return nil, fmt.Errorf("%w: upstream %q has a query or fragment", ErrInvalidRoute, raw)
	}
	if err := CheckUpstream(u); err != nil {
		return nil, err
	}
	return u, nil
}

// CheckUpstream validates a parsed upstream URL; New applies it to routes
// built without ParseRoute.
func CheckUpstream(u *url.URL) error {
	if u == nil {
		return fmt.Errorf("%w: no upstream URL", ErrInvalidRoute)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: upstream %q: scheme must be http or https", ErrInvalidRoute, u.Redacted())
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w: upstream %q has no host", ErrInvalidRoute, u.Redacted())
	}
	if u.User != nil {
		return fmt.Errorf("%w: upstream %q has userinfo; credentials do not belong in the URL", ErrInvalidRoute, u.Redacted())
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return fmt.Errorf("%w: upstream %q has a query or fragment", ErrInvalidRoute, u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		if u.Path[0] != '/' || path.Clean(u.Path) != strings.TrimSuffix(u.Path, "/") || strings.ContainsAny(u.Path, "\\\x00;") {
			return fmt.Errorf("%w: upstream %q: path is not clean", ErrInvalidRoute, u.Redacted())
		}
	}
	if u.RawPath != "" {
		return fmt.Errorf("%w: upstream %q: path must not contain escaped characters", ErrInvalidRoute, u.Redacted())
	}
	return nil
}

// safePath reports whether a request path is safe to forward: the decoded
// path is absolute and already clean, and neither it nor the raw (escaped)
// path holds anything an upstream might normalise into a different path.
func safePath(decoded, raw string) bool {
	if decoded == "" || decoded[0] != '/' {
		return false
	}
	if !httpx.CleanPath(decoded) {
		return false
	}
	if raw != "" && !safeRawPath(raw) {
		return false
	}
	return true
}

// safeRawPath checks the escaped form of a path as received: no encoded
// slash, backslash or NUL, which the decoded form cannot show.
func safeRawPath(raw string) bool {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			return false
		case '%':
			if i+2 < len(raw) {
				switch strings.ToLower(raw[i+1 : i+3]) {
				case "2f", "5c", "00":
					return false
				}
			}
		}
	}
	return true
}
