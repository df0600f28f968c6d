package vault

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/internal/jsonscan"
	"github.com/cloakroom/cloakroom/signin"
)

// ErrInvalidConfig wraps every problem [New] and the Parse functions find.
var ErrInvalidConfig = errors.New("vault: invalid configuration")

// Defaults for [Route].
const (
	DefaultHeader    = "Authorization"
	DefaultScheme    = "Bearer"
	DefaultUserClaim = "sub"
	DefaultMaxBody   = 1 << 20
)

// maxSpecLength bounds one flag value.
const maxSpecLength = 1024

// Sealer encrypts the vaulted tokens at rest; *seal.Keyring (the
// gateway's internal/seal) is one. Open must fail for a sealed value
// presented with other associated data.
type Sealer interface {
	Seal(plaintext, aad []byte) string
	Open(sealed string, aad []byte) ([]byte, error)
}

// Config configures a [Vault]. Admission, Sealer and Routes are required.
type Config struct {
	// Admission starts the sessions that hold the tokens, with the rules
	// every sign-in follows (package signin); its session manager ends
	// them. Required.
	Admission *signin.Admission
	// Sealer encrypts tokens before they reach the store. Required.
	Sealer Sealer
	// Routes are the proxy routes in vault mode. At least one.
	Routes []Route
	// Logger receives audit events (capture, refresh, drop, logout, leaks
	// caught), never token material. Default slog.Default().
	Logger *slog.Logger
}

// Route puts one proxy route in vault mode. Prefix and at least one
// Capture are required; every other field has a default.
type Route struct {
	// Prefix is the proxy route's prefix, such as "/api/".
	Prefix string
	// Capture lists the requests whose 2xx answer carries a token to vault
	// (login, register). At least one.
	Capture []Capture
	// TokenPaths are more JSON paths where answers may carry a new token
	// (refresh). The Capture fields are always included.
	TokenPaths []JSONPath
	// UserClaim is the claim of the token that names the session's user,
	// whose user ID is "{Prefix}:{claim}" (never a local account's).
	// Default "sub". Prefer a claim that never changes (a numeric id) over
	// one the user can edit (a username): a refreshed token that names
	// another user is refused.
	UserClaim string
	// Header and Scheme say how the token is sent upstream: "Header:
	// Scheme token". Default "Authorization" and "Bearer". The client's
	// own value of Header is removed from every request.
	Header string
	Scheme string
	// NoScheme sends the bare token in Header. Default false.
	NoScheme bool
	// DropField removes the token's field from answers instead of
	// replacing the token with the session's placeholder. Default false
	// (placeholder), which suits SPAs that check for a stored token.
	DropField bool
	// AttachOnCookie attaches the token to every call that carries the
	// session cookie. Default false: the call must also carry the session's
	// placeholder in Header, so clearing the SPA's storage logs out.
	AttachOnCookie bool
	// EndForgotten ends the session at the first call to the route that
	// shows the SPA has forgotten its token: it carries the session cookie,
	// "Sec-Fetch-Site: same-origin", a Sec-Fetch-Mode other than
	// "navigate", and no placeholder in Header (a value that is not one, or
	// none). Turn it on when the SPA sends its token with every call of
	// the route while signed in and its logout only clears its storage:
	// that logout then ends the server's session at the SPA's next call. A
	// cross-site link never ends it (the cookie is SameSite=Lax and the
	// request not same-origin), nor does a navigation, nor a call with
	// another session's placeholder (an old tab). Default false; not with
	// AttachOnCookie.
	EndForgotten bool
	// StripParams are parameters removed from every request, because the
	// backend would take a token from them: from the query and from form,
	// JSON and multipart bodies, under every spelling PHP, Rack or qs
	// read as the name, without regard to ASCII case. "access_token" is
	// always included.
	StripParams []string
	// Logout lists the app's own logout requests; each ends the session
	// (the token is still attached to that request, then forgotten).
	// Default none.
	Logout []Endpoint
	// MaxBody bounds a JSON response body, before and after
	// decompression; a larger one is refused with 502. Default 1 MiB.
	MaxBody int64
}

// Endpoint is a method and a path pattern of net/http.ServeMux syntax
// ("/api/articles/{slug}"); an empty Method matches every method.
type Endpoint struct {
	Method string
	Path   string
}

func (e Endpoint) pattern() string {
	if e.Method == "" {
		return e.Path
	}
	return e.Method + " " + e.Path
}

// String returns the endpoint as ParseEndpoint reads it.
func (e Endpoint) String() string { return e.pattern() }

// Capture is a request whose 2xx answer carries a token at Field.
type Capture struct {
	Endpoint
	Field JSONPath
}

// String returns the capture as ParseCapture reads it.
func (c Capture) String() string { return c.pattern() + " " + c.Field.String() }

// ParseCapture reads "METHOD PATH FIELD", for example
// "POST /api/users/login user.token".
func ParseCapture(s string) (Capture, error) {
	if len(s) > maxSpecLength {
		return Capture{}, fmt.Errorf("%w: capture longer than %d bytes", ErrInvalidConfig, maxSpecLength)
	}
	f := strings.Fields(s)
	if len(f) != 3 {
		return Capture{}, fmt.Errorf("%w: capture %q is not \"METHOD PATH FIELD\" (for example \"POST /api/users/login user.token\")", ErrInvalidConfig, s)
	}
	e, err := ParseEndpoint(f[0] + " " + f[1])
	if err != nil {
		return Capture{}, err
	}
	if e.Method == "" {
		return Capture{}, fmt.Errorf("%w: capture %q has no method", ErrInvalidConfig, s)
	}
	p, err := ParseJSONPath(f[2])
	if err != nil {
		return Capture{}, err
	}
	return Capture{Endpoint: e, Field: p}, nil
}

// ParseEndpoint reads "METHOD PATH" or "PATH", for example
// "POST /api/users/logout".
func ParseEndpoint(s string) (Endpoint, error) {
	if len(s) > maxSpecLength {
		return Endpoint{}, fmt.Errorf("%w: endpoint longer than %d bytes", ErrInvalidConfig, maxSpecLength)
	}
	var e Endpoint
	switch f := strings.Fields(s); len(f) {
	case 1:
		e.Path = f[0]
	case 2:
		e.Method, e.Path = f[0], f[1]
	default:
		return Endpoint{}, fmt.Errorf("%w: endpoint %q is not \"METHOD PATH\"", ErrInvalidConfig, s)
	}
	if e.Method != "" && !validToken(e.Method) {
		return Endpoint{}, fmt.Errorf("%w: endpoint %q: method %q is not a valid HTTP method", ErrInvalidConfig, s, e.Method)
	}
	if !strings.HasPrefix(e.Path, "/") || strings.ContainsAny(e.Path, "?#%\\") {
		return Endpoint{}, fmt.Errorf("%w: endpoint %q: path must start with / and hold no query, fragment or escapes", ErrInvalidConfig, s)
	}
	if err := checkPattern(e.pattern()); err != nil {
		return Endpoint{}, fmt.Errorf("%w: endpoint %q: %v", ErrInvalidConfig, s, err)
	}
	return e, nil
}

// checkPattern asks net/http.ServeMux, which panics on a bad pattern.
func checkPattern(p string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	http.NewServeMux().Handle(p, http.NotFoundHandler())
	return nil
}

// ParseHeader reads "Header: Scheme" ("Authorization: Token"), or
// "Header:" for a bare token in a header of its own.
func ParseHeader(s string) (header, scheme string, noScheme bool, err error) {
	name, value, ok := strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || !validToken(name) {
		return "", "", false, fmt.Errorf("%w: header %q is not \"Header: Scheme\" (for example \"Authorization: Token\")", ErrInvalidConfig, s)
	}
	if value != "" && !validToken(value) {
		return "", "", false, fmt.Errorf("%w: header %q: scheme %q must be one word", ErrInvalidConfig, s, value)
	}
	return textproto.CanonicalMIMEHeaderKey(name), value, value == "", nil
}

// validToken reports whether s is an RFC 9110 token of at most 64 bytes.
// An RFC 6265 cookie-name is the same grammar, which the core checks.
func validToken(s string) bool { return len(s) <= 64 && cloakroom.ValidCookieName(s) }

// route is a checked Route with its matchers.
type route struct {
	Route
	v        *Vault
	scheme   string // "Bearer " or "" for a bare token
	capture  *http.ServeMux
	captures []Capture
	// captureMethods spares the pattern match for other methods.
	captureMethods map[string]bool
	logout         *http.ServeMux
	paths          []JSONPath // capture fields and TokenPaths, deduplicated
	keys           [][]byte   // the paths' last segments, quoted, for a cheap pre-check
	strip          paramNames
	label          string // metric label: the prefix
	tokenAAD       []byte // the route part of the associated data
	hasLogout      bool
}

// captureIndex is the handler registered for capture i; ServeMux tells
// which one matched.
type captureIndex int

func (captureIndex) ServeHTTP(http.ResponseWriter, *http.Request) {}

func (cfg *Config) validate() ([]*route, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if cfg.Admission == nil {
		bad("Admission is required")
	}
	if cfg.Sealer == nil {
		bad("Sealer is required (a key file: --vault-keys-file)")
	}
	if len(cfg.Routes) == 0 {
		bad("at least one route is required")
	}
	var routes []*route
	seen := map[string]bool{}
	for _, r := range cfg.Routes {
		rt, errs := newRoute(r)
		problems = append(problems, errs...)
		if seen[r.Prefix] {
			bad("route %q is given twice", r.Prefix)
		}
		seen[r.Prefix] = true
		routes = append(routes, rt)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return routes, nil
}

func newRoute(r Route) (*route, []error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: route %q: "+format, append([]any{ErrInvalidConfig, r.Prefix}, args...)...))
	}
	if !strings.HasPrefix(r.Prefix, "/") || !strings.HasSuffix(r.Prefix, "/") {
		bad("prefix must start and end with /")
	}
	if strings.Contains(r.Prefix, ":") || len(r.Prefix) > maxUserLength/2 {
		// It starts the route's user IDs, "{prefix}:{claim}".
		bad("prefix must hold no ':' and be at most %d bytes", maxUserLength/2)
	}
	if len(r.Capture) == 0 {
		bad("no capture request: name the login request, for example \"POST %susers/login user.token\"", r.Prefix)
	}
	if r.UserClaim == "" {
		r.UserClaim = DefaultUserClaim
	}
	if r.Header == "" {
		r.Header = DefaultHeader
	}
	if !validToken(r.Header) {
		bad("Header %q is not a header name", r.Header)
	}
	r.Header = textproto.CanonicalMIMEHeaderKey(r.Header)
	if r.Scheme == "" && !r.NoScheme {
		r.Scheme = DefaultScheme
	}
	if r.Scheme != "" && !validToken(r.Scheme) {
		bad("Scheme %q must be one word", r.Scheme)
	}
	if r.EndForgotten && r.AttachOnCookie {
		bad("EndForgotten needs the placeholder with every call, which AttachOnCookie does not")
	}
	if r.MaxBody == 0 {
		r.MaxBody = DefaultMaxBody
	}
	if r.MaxBody < 0 {
		bad("MaxBody must be positive")
	}
	rt := &route{Route: r, label: r.Prefix, capture: http.NewServeMux(), logout: http.NewServeMux(),
		captureMethods: map[string]bool{}}
	if r.Scheme != "" && !r.NoScheme {
		rt.scheme = r.Scheme + " "
	}
	rt.tokenAAD = []byte("cloakroom vault\x00" + r.Prefix + "\x00")
	addPath := func(p JSONPath) {
		for _, q := range rt.paths {
			if q.String() == p.String() {
				return
			}
		}
		rt.paths = append(rt.paths, p)
		rt.keys = append(rt.keys, []byte(strconv.Quote(p[len(p)-1])))
	}
	for i, c := range r.Capture {
		if len(c.Field) == 0 {
			bad("capture %q has no field", c.pattern())
			continue
		}
		if !httpx.PathUnder(c.Path, r.Prefix) {
			bad("capture %q is not under the route's prefix", c.pattern())
		}
		for _, pattern := range slashTwins(c.Endpoint) {
			if err := register(rt.capture, pattern, captureIndex(i)); err != nil {
				bad("capture %q: %v", c.pattern(), err)
				break
			}
		}
		addPath(c.Field)
		rt.captures = append(rt.captures, c)
		rt.captureMethods[c.Method] = true
	}
	for _, p := range r.TokenPaths {
		if len(p) == 0 {
			bad("empty token path")
			continue
		}
		addPath(p)
	}
	if len(rt.paths) > jsonscan.MaxPaths {
		bad("more than %d token paths (capture fields and TokenPaths)", jsonscan.MaxPaths)
	}
	for _, e := range r.Logout {
		if !httpx.PathUnder(e.Path, r.Prefix) {
			bad("logout %q is not under the route's prefix", e.pattern())
		}
		if err := register(rt.logout, e.pattern(), http.NotFoundHandler()); err != nil {
			bad("logout %q: %v", e.pattern(), err)
		}
		rt.hasLogout = true
	}
	for _, p := range r.StripParams {
		if p == "" {
			bad("empty strip parameter")
		}
	}
	rt.strip = newParamNames(append([]string{"access_token"}, r.StripParams...)...)
	return rt, problems
}

// slashTwins returns the patterns of a capture: its path exactly, with
// and without a trailing slash ("/api/users" and "/api/users/"). Backends
// redirect one to the other (a 307 keeps the method), and the browser's
// second request must be captured as well; nothing below the path is.
func slashTwins(e Endpoint) []string {
	path := strings.TrimSuffix(e.Path, "{$}")
	if path == "/" || strings.HasSuffix(path, "...}") {
		return []string{e.pattern()}
	}
	bare := strings.TrimSuffix(path, "/")
	out := make([]string, 0, 2)
	for _, p := range []string{bare, bare + "/{$}"} {
		out = append(out, Endpoint{Method: e.Method, Path: p}.pattern())
	}
	return out
}

func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}
