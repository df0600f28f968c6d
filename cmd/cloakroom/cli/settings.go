package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom/vault"
)

// Config is the configuration of `cloakroom serve`. Every field is one
// setting: a flag, a CLOAKROOM_* environment variable and a key of the JSON
// config file, all named after the flag (see settings). Precedence: flags,
// then environment, then the file, then the defaults below.
type Config struct {
	ConfigFile string

	Listen                  string
	AdminListen             string
	AdminAllowRemote        bool
	InsecureHTTPBehindProxy bool
	TrustedProxies          []string
	TLSCert                 string
	TLSKey                  string

	Upstreams []string
	Static    string
	Frontend  string
	Public    []string

	CSP           string
	CSPReportOnly bool

	Store   string
	DataDir string

	AdminTokenFile string

	InternalJWT       bool
	JWTKeyFile        string
	JWTIssuer         string
	UpstreamAudiences []string

	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	CookieSameSite  string
	TrustedOrigins  []string

	LogLevel  string
	LogFormat string

	Vault             []string
	VaultKeysFile     string
	VaultCapture      []string
	VaultTokenPath    []string
	VaultUserClaim    string
	VaultHeader       string
	VaultDropField    bool
	VaultCookieOnly   []string
	VaultEndForgotten []string
	VaultStripParam   []string
	VaultLogout       []string
	oidcConfig        // cmd/cloakroom/cli/oidc.go
	forwardAuthConfig // cmd/cloakroom/cli/forwardauth.go
	totpConfig        // cmd/cloakroom/cli/totp.go
	passkeyConfig     // cmd/cloakroom/cli/passkeys.go
	dbscConfig        // cmd/cloakroom/cli/dbsc.go
}

// Defaults. Each is the secure choice; docs/configuration.md says why.
const (
	DefaultListen      = "127.0.0.1:8080"
	DefaultAdminListen = "127.0.0.1:9090"
	DefaultStore       = "sqlite://./cloakroom.db"
	DefaultDataDir     = "."
	DefaultJWTIssuer   = "cloakroom"
)

func defaultConfig() Config {
	return Config{
		Listen:          DefaultListen,
		AdminListen:     DefaultAdminListen,
		Store:           DefaultStore,
		DataDir:         DefaultDataDir,
		JWTIssuer:       DefaultJWTIssuer,
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		CookieSameSite:  "lax",
		LogLevel:        "info",
		LogFormat:       "text",
		VaultUserClaim:  vault.DefaultUserClaim,
		VaultHeader:     vault.DefaultHeader + ": " + vault.DefaultScheme,
	}
}

// setting is one configuration knob. Its flag name is also its config-file
// key; its environment variable is CLOAKROOM_ plus the name in upper case
// with dashes as underscores.
type setting struct {
	name  string
	arg   string // placeholder in usage text; "" for booleans
	usage string
	field func(*Config) any // *string, *bool, *[]string or *time.Duration
}

func (s *setting) env() string {
	return "CLOAKROOM_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

// settings lists every setting of `serve`, in the order of the usage text.
var settings = append([]*setting{
	{"config", "FILE", "read settings from this JSON file (keys are the flag names)", func(c *Config) any { return &c.ConfigFile }},
	{"listen", "ADDR", "public listener address", func(c *Config) any { return &c.Listen }},
	{"admin-listen", "ADDR", "admin listener (/healthz, /readyz, /metrics, /admin/); empty disables it", func(c *Config) any { return &c.AdminListen }},
	{"admin-allow-remote", "", "allow a non-loopback --admin-listen address", func(c *Config) any { return &c.AdminAllowRemote }},
	{"tls-cert", "FILE", "TLS certificate chain (PEM); serve HTTPS with --tls-key", func(c *Config) any { return &c.TLSCert }},
	{"tls-key", "FILE", "TLS private key (PEM)", func(c *Config) any { return &c.TLSKey }},
	{"insecure-http-behind-proxy", "", "allow plain HTTP on a non-loopback address (a TLS-terminating proxy is in front)", func(c *Config) any { return &c.InsecureHTTPBehindProxy }},
	{"trusted-proxy", "CIDR", "proxy whose X-Forwarded-For names the client (repeatable), e.g. 10.0.0.0/8", func(c *Config) any { return &c.TrustedProxies }},
	{"upstream", "PREFIX=URL", "proxy requests under PREFIX to URL (repeatable), e.g. /api/=http://127.0.0.1:9000", func(c *Config) any { return &c.Upstreams }},
	{"static", "DIR", "serve the SPA from this folder (index.html for client-side routes)", func(c *Config) any { return &c.Static }},
	{"frontend", "URL", "proxy the SPA from this URL instead of --static", func(c *Config) any { return &c.Frontend }},
	{"public", "PREFIX", "path prefix served without a session (repeatable), e.g. /assets/", func(c *Config) any { return &c.Public }},
	{"csp", "POLICY", "Content-Security-Policy of the SPA (default: script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \"off\" for none); violations are reported to /auth/csp-report", func(c *Config) any { return &c.CSP }},
	{"csp-report-only", "", "send the SPA's CSP as report-only, to roll it out", func(c *Config) any { return &c.CSPReportOnly }},
	{"store", "URL", "session and user store: sqlite://PATH, redis://HOST:PORT[/DB] (rediss:// for TLS) or postgres://USER@HOST/DB (postgresql:// too); options in docs/configuration.md", func(c *Config) any { return &c.Store }},
	{"data-dir", "DIR", "folder for generated state (the internal JWT key)", func(c *Config) any { return &c.DataDir }},
	{"admin-token-file", "FILE", "file holding the admin API bearer token (not world-readable); none disables the admin API", func(c *Config) any { return &c.AdminTokenFile }},
	{"internal-jwt", "", "send upstreams a short-lived signed JWT (Authorization: Bearer) besides X-Forwarded-*", func(c *Config) any { return &c.InternalJWT }},
	{"jwt-key-file", "FILE", "Ed25519 private key (PEM, PKCS#8) for --internal-jwt; default: generated in --data-dir", func(c *Config) any { return &c.JWTKeyFile }},
	{"jwt-issuer", "NAME", "iss claim of the internal JWT", func(c *Config) any { return &c.JWTIssuer }},
	{"upstream-audience", "PREFIX=NAME", "aud of the internal JWT sent through the --upstream route PREFIX (repeatable); default the prefix, e.g. /api/", func(c *Config) any { return &c.UpstreamAudiences }},
	{"idle-timeout", "DURATION", "end a session unused for this long", func(c *Config) any { return &c.IdleTimeout }},
	{"absolute-timeout", "DURATION", "end a session this long after login", func(c *Config) any { return &c.AbsoluteTimeout }},
	{"cookie-samesite", "MODE", "SameSite of the session cookie: lax or strict", func(c *Config) any { return &c.CookieSameSite }},
	{"trusted-origin", "ORIGIN", "origin allowed to send cross-origin unsafe requests and open WebSockets (repeatable)", func(c *Config) any { return &c.TrustedOrigins }},
	{"log-level", "LEVEL", "debug, info, warn or error", func(c *Config) any { return &c.LogLevel }},
	{"log-format", "FORMAT", "text or json", func(c *Config) any { return &c.LogFormat }},
}, vaultSettings...)

func lookupSetting(name string) *setting {
	i := slices.IndexFunc(settings, func(s *setting) bool { return s.name == name })
	if i < 0 {
		panic("cli: no setting " + name)
	}
	return settings[i]
}

func isBool(s *setting) bool {
	_, ok := s.field(&Config{}).(*bool)
	return ok
}

// setString sets the field from a flag or environment value. Lists from the
// environment are comma-separated; a repeated flag adds one item each time.
func setString(s *setting, cfg *Config, value string, splitList bool) error {
	switch p := s.field(cfg).(type) {
	case *string:
		*p = value
	case *bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (use true or false)", value)
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%q is not a duration (use for example 30m or 12h)", value)
		}
		*p = d
	case *[]string:
		if !splitList {
			*p = append(*p, value)
			return nil
		}
		*p = nil
		for item := range strings.SplitSeq(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*p = append(*p, item)
			}
		}
	}
	return nil
}

// setJSON sets the field from a config-file value.
func setJSON(s *setting, cfg *Config, raw json.RawMessage) error {
	switch p := s.field(cfg).(type) {
	case *string:
		if err := json.Unmarshal(raw, p); err != nil {
			return errors.New("must be a string")
		}
	case *bool:
		if err := json.Unmarshal(raw, p); err != nil {
			return errors.New("must be true or false")
		}
	case *time.Duration:
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return errors.New(`must be a duration string such as "30m"`)
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (use for example \"30m\" or \"12h\")", v)
		}
		*p = d
	case *[]string:
		var v []string
		if err := json.Unmarshal(raw, &v); err != nil {
			return errors.New("must be a list of strings")
		}
		*p = v
	}
	return nil
}

// flagValue records a flag's raw values; they are applied after the file
// and the environment, so flags take precedence.
type flagValue struct {
	s      *setting
	values []string
}

func (f *flagValue) String() string { return strings.Join(f.values, ",") }

func (f *flagValue) Set(v string) error {
	// Parse now so that a malformed flag is a usage error (exit 2).
	if err := setString(f.s, &Config{}, v, false); err != nil {
		return err
	}
	f.values = append(f.values, v)
	return nil
}

func (f *flagValue) IsBoolFlag() bool { return isBool(f.s) }

// configFlags holds the flags of a subset of the settings; resolve turns
// them, the environment and the config file into a Config.
type configFlags struct {
	subset map[string]*flagValue
	order  []*setting
}

// registerSettings registers the named settings as flags on fs.
func registerSettings(fs *flag.FlagSet, names ...string) *configFlags {
	cf := &configFlags{subset: make(map[string]*flagValue)}
	def := defaultConfig()
	for _, name := range names {
		s := lookupSetting(name)
		v := &flagValue{s: s}
		cf.subset[name] = v
		cf.order = append(cf.order, s)
		usage := s.usage
		if d := defaultText(s, &def); d != "" {
			usage += " (default " + d + ")"
		}
		usage += " [$" + s.env() + "]"
		fs.Var(v, s.name, usage)
	}
	return cf
}

func defaultText(s *setting, def *Config) string {
	switch p := s.field(def).(type) {
	case *string:
		return *p
	case *time.Duration:
		return p.String()
	}
	return ""
}

// resolve applies the defaults, the config file, the environment and the
// flags, in that order. It returns every problem it met, not only the first.
func (cf *configFlags) resolve(lookupEnv func(string) (string, bool)) (Config, []error) {
	cfg := defaultConfig()
	var problems []error

	// The config file's own path: flag, then environment.
	if v := cf.subset["config"]; v != nil {
		cfg.ConfigFile = ""
		if env, ok := lookupEnv(v.s.env()); ok && env != "" {
			cfg.ConfigFile = env
		}
		if len(v.values) > 0 {
			cfg.ConfigFile = v.values[len(v.values)-1]
		}
		if cfg.ConfigFile != "" {
			problems = append(problems, cf.applyFile(&cfg, cfg.ConfigFile)...)
		}
	}
	for _, s := range cf.order {
		if s.name == "config" {
			continue
		}
		// An empty variable counts as unset, as container tools often
		// pass every variable through, set or not.
		if env, ok := lookupEnv(s.env()); ok && env != "" {
			if err := setString(s, &cfg, env, true); err != nil {
				problems = append(problems, fmt.Errorf("$%s: %w", s.env(), err))
			}
		}
	}
	for _, s := range cf.order {
		v := cf.subset[s.name]
		if s.name == "config" || len(v.values) == 0 {
			continue
		}
		if p, ok := s.field(&cfg).(*[]string); ok {
			*p = nil // flags replace a list from the file or the environment
		}
		for _, raw := range v.values {
			_ = setString(s, &cfg, raw, false) // checked by Set
		}
	}
	return cfg, problems
}

// maxConfigFileBytes bounds the config file; anything larger is a mistake.
const maxConfigFileBytes = 1 << 20

func (cf *configFlags) applyFile(cfg *Config, path string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{fmt.Errorf("config file: %w", err)}
	}
	if len(data) > maxConfigFileBytes {
		return []error{fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFileBytes)}
	}
	keys, err := decodeSettings(path, data)
	if err != nil {
		return []error{err}
	}
	var problems []error
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		i := slices.IndexFunc(settings, func(s *setting) bool { return s.name == k })
		switch {
		case i < 0:
			problems = append(problems, fmt.Errorf("config file %s: unknown key %q", path, k))
		case k == "config":
			problems = append(problems, fmt.Errorf("config file %s: a config file cannot name another (key \"config\")", path))
		case cf.subset[k] == nil:
			// A serve setting in a file shared with `user` and `sessions`.
		default:
			if err := setJSON(settings[i], cfg, keys[k]); err != nil {
				problems = append(problems, fmt.Errorf("config file %s: key %q: %w", path, k, err))
			}
		}
	}
	return problems
}

// decodeSettings reads a config file's JSON object. Its errors say where
// the file is wrong in an editor's terms (path:line:column), or what the
// file must be, instead of naming Go types.
func decodeSettings(path string, data []byte) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("config file %s: empty; write {} for no settings", path)
	}
	var keys map[string]json.RawMessage
	err := json.Unmarshal(data, &keys)
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		line, column := position(data, syntax)
		return nil, fmt.Errorf("%s:%d:%d: %s", path, line, column, syntax.Error())
	case err != nil || keys == nil: // an array, a string, a number, null
		return nil, fmt.Errorf("config file %s: must be a JSON object of settings", path)
	}
	return keys, nil
}

// position returns the 1-based line and column of a syntax error: the byte
// the decoder refused, or the end of the data when it ended too soon.
func position(data []byte, err *json.SyntaxError) (line, column int) {
	at := int(err.Offset) - 1 // Offset counts the refused byte
	if at < 0 || int(err.Offset) >= len(data) && err.Error() == "unexpected end of JSON input" {
		at = len(data)
	}
	at = min(at, len(data))
	lineStart := bytes.LastIndexByte(data[:at], '\n') + 1
	return bytes.Count(data[:at], []byte("\n")) + 1, at - lineStart + 1
}
