package cli

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/seal"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// minAdminTokenLength is the shortest admin token accepted: a bearer token
// guessable in a few tries would open the admin API.
const minAdminTokenLength = gateway.MinAdminTokenLength

// jwtKeyFileName is the generated signing key's name inside --data-dir.
const jwtKeyFileName = "cloakroom-jwt-ed25519.pem"

// plan is a validated configuration with every file it names read and
// parsed, ready to start.
type plan struct {
	cfg         Config
	routes      []proxy.Route
	frontend    *url.URL
	store       storeurl.Location
	adminToken  string
	tls         *tls.Config // nil for plain HTTP
	adminTLS    bool        // the admin listener serves TLS too (it is not on loopback)
	jwtKey      ed25519.PrivateKey
	jwtKeyPath  string // where the key is, or will be generated
	sameSite    http.SameSite
	proxies     []netip.Prefix // trusted proxies for the client address
	logLevel    slog.Level
	vault       *vaultPlan             // nil without --vault
	oidc        *oidcPlan              // nil without --oidc-provider
	forwardAuth *forwardauth.Config    // nil without forward-auth rules
	totpKeys    *seal.Keyring          // nil without --totp-keys-file
	passkeys    accounts.PasskeyConfig // zero without --webauthn-rp-id
	dbsc        *dbscPlan              // nil without --dbsc-key-file
	// warnings name what is accepted but unsafe; serve logs them at start
	// and --check-config prints them.
	warnings []string
}

// validate checks cfg and reads the files it names. It reports every
// problem, joined, not only the first. It is every check serve makes
// before it opens the store, and all --check-config makes: the two cannot
// disagree.
func validate(cfg Config) (*plan, error) {
	p := &plan{cfg: cfg}
	var problems []error
	bad := func(format string, args ...any) { problems = append(problems, fmt.Errorf(format, args...)) }

	// TLS first: it decides whether a non-loopback listener is acceptable.
	switch {
	case cfg.TLSCert != "" && cfg.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			bad("--tls-cert/--tls-key: %w", err)
		} else {
			p.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		}
		if err := checkPrivateFile(cfg.TLSKey); err != nil {
			bad("--tls-key: %w", err)
		}
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		bad("--tls-cert and --tls-key go together; got only one")
	}
	tlsWanted := cfg.TLSCert != "" && cfg.TLSKey != ""

	publicLoopback, err := checkListenAddr(cfg.Listen)
	if err != nil {
		bad("--listen: %w", err)
	} else if !publicLoopback && !tlsWanted && !cfg.InsecureHTTPBehindProxy {
		bad("--listen %s: refusing plain HTTP on a non-loopback address; configure --tls-cert and --tls-key, or pass --insecure-http-behind-proxy if a TLS-terminating proxy is in front", cfg.Listen)
	}
	if cfg.AdminListen != "" {
		adminLoopback, err := checkListenAddr(cfg.AdminListen)
		switch {
		case err != nil:
			bad("--admin-listen: %w", err)
		case !adminLoopback && !cfg.AdminAllowRemote:
			bad("--admin-listen %s: not a loopback address; the admin listener serves metrics and the admin API, so pass --admin-allow-remote to expose it deliberately", cfg.AdminListen)
		case !adminLoopback && !tlsWanted && !cfg.InsecureHTTPBehindProxy:
			bad("--admin-listen %s: refusing plain HTTP on a non-loopback address; configure TLS or pass --insecure-http-behind-proxy", cfg.AdminListen)
		}
		p.adminTLS = err == nil && !adminLoopback && tlsWanted
		if cfg.AdminListen == cfg.Listen && err == nil && !strings.HasSuffix(cfg.Listen, ":0") {
			bad("--admin-listen and --listen are the same address %s", cfg.Listen)
		}
	}

	proxies, proxyProblems := parseTrustedProxies(cfg.TrustedProxies)
	p.proxies = proxies
	problems = append(problems, proxyProblems...)
	if len(proxyProblems) == 0 && len(proxies) == 0 && cfg.InsecureHTTPBehindProxy {
		p.warnings = append(p.warnings, "--insecure-http-behind-proxy without --trusted-proxy: every client appears with the proxy's address, so login throttling by address applies to all clients at once")
	}

	for _, u := range cfg.Upstreams {
		r, err := proxy.ParseRoute(u)
		if err != nil {
			bad("--upstream %q: %w", u, err)
			continue
		}
		if auth := gateway.DefaultAuthPrefix + "/"; strings.HasPrefix(r.Prefix, auth) {
			bad("--upstream %q: prefix %s is under %s, where the gateway's own endpoints live; it would never be reached (always 404)", u, r.Prefix, auth)
			continue
		}
		p.routes = append(p.routes, r)
	}
	problems = append(problems, applyAudiences(cfg, p.routes)...)
	switch {
	case cfg.Static != "" && cfg.Frontend != "":
		bad("--static and --frontend both set; the SPA comes from one of them")
	case cfg.Static != "":
		if info, err := os.Stat(cfg.Static); err != nil {
			bad("--static: %w", err)
		} else if !info.IsDir() {
			bad("--static %s: not a folder", cfg.Static)
		} else if _, err := os.Stat(filepath.Join(cfg.Static, "index.html")); err != nil {
			bad("--static %s: no index.html in it", cfg.Static)
		}
	case cfg.Frontend != "":
		u, err := url.Parse(cfg.Frontend)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			bad("--frontend %q: want an absolute http:// or https:// URL without credentials", cfg.Frontend)
		} else {
			p.frontend = u
		}
	}
	for _, pub := range cfg.Public {
		if !strings.HasPrefix(pub, "/") || strings.ContainsAny(pub, "?#\\") || strings.Contains(pub, "..") {
			bad("--public %q: want a path prefix starting with / (for example /assets/)", pub)
		}
	}

	if loc, warnings, err := storeurl.Check(cfg.Store); err != nil {
		bad("--store: %w", err)
	} else {
		p.store = loc
		for _, w := range warnings {
			p.warnings = append(p.warnings, "--store: "+w)
		}
		if loc.Kind == "sqlite" {
			// The file is created on first use, its folder is not.
			dir := filepath.Dir(loc.Path)
			if info, err := os.Stat(dir); err != nil || !info.IsDir() {
				bad("--store %s: the folder %s does not exist; create it first (the database file is created in it)", loc, dir)
			}
		}
	}

	if cfg.AdminTokenFile != "" {
		data, err := readSecretFile(cfg.AdminTokenFile)
		token := strings.TrimSpace(string(data))
		switch {
		case err != nil:
			bad("--admin-token-file: %w", err)
		case len(token) < minAdminTokenLength:
			bad("--admin-token-file %s: the token has %d characters; use at least %d random ones (for example: openssl rand -hex 32)", cfg.AdminTokenFile, len(token), minAdminTokenLength)
		case strings.ContainsAny(token, " \t\r\n"):
			bad("--admin-token-file %s: the token must be one line without spaces", cfg.AdminTokenFile)
		default:
			p.adminToken = token
		}
	}

	if cfg.InternalJWT {
		if cfg.JWTIssuer == "" {
			bad("--jwt-issuer: must not be empty with --internal-jwt")
		}
		if cfg.JWTKeyFile != "" {
			key, err := loadJWTKey(cfg.JWTKeyFile)
			if err != nil {
				bad("--jwt-key-file: %w", err)
			}
			p.jwtKey, p.jwtKeyPath = key, cfg.JWTKeyFile
		} else {
			p.jwtKeyPath = filepath.Join(cfg.DataDir, jwtKeyFileName)
			if _, err := os.Stat(p.jwtKeyPath); err == nil {
				key, err := loadJWTKey(p.jwtKeyPath)
				if err != nil {
					bad("generated JWT key: %w", err)
				}
				p.jwtKey = key
			} else if info, err := os.Stat(cfg.DataDir); err != nil || !info.IsDir() {
				bad("--data-dir %s: not an existing folder; the generated JWT key is kept there", cfg.DataDir)
			}
		}
		if len(p.routes) == 0 {
			bad("--internal-jwt without any --upstream: there is no upstream to send the token to")
		}
	} else if cfg.JWTKeyFile != "" {
		bad("--jwt-key-file is set but --internal-jwt is not")
	}

	switch {
	case cfg.IdleTimeout <= 0:
		bad("--idle-timeout %v: must be positive", cfg.IdleTimeout)
	case cfg.AbsoluteTimeout < cfg.IdleTimeout:
		bad("--absolute-timeout %v: must not be shorter than --idle-timeout %v", cfg.AbsoluteTimeout, cfg.IdleTimeout)
	}
	switch strings.ToLower(cfg.CookieSameSite) {
	case "lax":
		p.sameSite = http.SameSiteLaxMode
	case "strict":
		p.sameSite = http.SameSiteStrictMode
	case "none":
		bad("--cookie-samesite none: would send the session cookie with cross-site requests; use lax or strict")
	default:
		bad("--cookie-samesite %q: want lax or strict", cfg.CookieSameSite)
	}
	cop := http.NewCrossOriginProtection()
	for _, o := range cfg.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			bad("--trusted-origin %q: %w", o, err)
		}
	}
	if err := p.logLevel.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		bad("--log-level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		bad("--log-format %q: want text or json", cfg.LogFormat)
	}
	var vaultProblems []error
	p.vault, vaultProblems = validateVault(cfg, p.routes)
	problems = append(problems, vaultProblems...)
	var oidcProblems []error
	p.oidc, oidcProblems = validateOIDC(cfg, p.routes)
	problems = append(problems, oidcProblems...)
	var totpProblems []error
	p.totpKeys, totpProblems = validateTOTP(cfg)
	problems = append(problems, totpProblems...)
	var passkeyProblems []error
	p.passkeys, passkeyProblems = validatePasskeys(cfg)
	problems = append(problems, passkeyProblems...)
	var dbscProblems []error
	p.dbsc, dbscProblems = validateDBSC(cfg)
	problems = append(problems, dbscProblems...)
	if p.dbsc != nil && p.tls == nil && !cfg.InsecureHTTPBehindProxy {
		p.warnings = append(p.warnings, "--dbsc-key-file without HTTPS: browsers bind sessions only over HTTPS (serve it with --tls-cert, or behind a TLS proxy with --insecure-http-behind-proxy)")
	}
	var forwardAuthProblems []error
	p.forwardAuth, forwardAuthProblems = validateForwardAuth(cfg)
	problems = append(problems, forwardAuthProblems...)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return p, nil
}

// checkListenAddr checks a host:port address and reports whether it binds
// only to loopback. An empty host binds every interface.
func checkListenAddr(addr string) (loopback bool, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return false, fmt.Errorf("%q: bad port %q", addr, port)
	}
	return isLoopbackHost(host), nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSecretFile reads a file holding a secret. It must be a non-empty
// regular file that other users cannot read.
func readSecretFile(path string) ([]byte, error) {
	if err := checkPrivateFile(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return data, nil
}

// checkPrivateFile refuses a secret file every user can read.
func checkPrivateFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if info.Mode().Perm()&0o004 != 0 {
		return fmt.Errorf("%s is readable by every user (mode %v); run chmod 600 on it", path, info.Mode().Perm())
	}
	return nil
}

// loadJWTKey reads an Ed25519 private key in a PKCS#8 PEM block, as written
// by `openssl genpkey -algorithm ed25519`.
func loadJWTKey(path string) (ed25519.PrivateKey, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" block (PKCS#8; openssl genpkey -algorithm ed25519)", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	edKey, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an Ed25519 key", path, key)
	}
	return edKey, nil
}

// loadOrCreateJWTKey returns the key at path, generating and saving it
// (owner-only) when there is none.
func loadOrCreateJWTKey(path string) (ed25519.PrivateKey, bool, error) {
	if _, err := os.Stat(path); err == nil {
		key, err := loadJWTKey(path)
		return key, false, err
	}
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("save the generated JWT key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, fmt.Errorf("save the generated JWT key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("save the generated JWT key: %w", err)
	}
	return key, true, nil
}

// maxAudienceLength bounds an --upstream-audience name.
const maxAudienceLength = 256

// applyAudiences sets the internal JWT audience of the routes that
// --upstream-audience names.
func applyAudiences(cfg Config, routes []proxy.Route) []error {
	var problems []error
	if len(cfg.UpstreamAudiences) > 0 && !cfg.InternalJWT {
		problems = append(problems, errors.New("--upstream-audience needs --internal-jwt: without it no token is sent"))
	}
	set := make(map[string]bool)
	for _, a := range cfg.UpstreamAudiences {
		prefix, name, ok := strings.Cut(a, "=")
		if !ok || prefix == "" || name == "" {
			problems = append(problems, fmt.Errorf("--upstream-audience %q: not PREFIX=NAME (for example /api/=notes-api)", a))
			continue
		}
		if len(name) > maxAudienceLength || !printableNoSpace(name) {
			problems = append(problems, fmt.Errorf("--upstream-audience %q: the name must be 1 to %d bytes of printable ASCII without spaces", a, maxAudienceLength))
			continue
		}
		prefix, found := routePrefix(routes, prefix)
		if !found {
			problems = append(problems, fmt.Errorf("--upstream-audience %q: no --upstream route %s", a, prefix))
			continue
		}
		if set[prefix] {
			problems = append(problems, fmt.Errorf("--upstream-audience %q: the audience of %s is set twice", a, prefix))
			continue
		}
		set[prefix] = true
		for i := range routes {
			if routes[i].Prefix == prefix {
				routes[i].Audience = name
			}
		}
	}
	return problems
}

func printableNoSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
