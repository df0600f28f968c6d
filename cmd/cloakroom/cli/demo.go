package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/demoapp"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
)

// Defaults of `cloakroom demo`.
const (
	defaultDemoData        = "./cloakroom-demo"
	defaultDemoListen      = "127.0.0.1:8080"
	defaultDemoAdminListen = "127.0.0.1:9090"
)

// demoUsers are created on the first run, with random passwords.
var demoUsers = []struct {
	name  string
	roles []string
}{
	{"alice", []string{"admin"}},
	{"bob", []string{"user"}},
}

func runDemo(e *env, args []string) int {
	fs := newFlagSet(e, "demo", "[--data DIR] [--listen ADDR] [--admin-listen ADDR]",
		`Run the gateway on loopback in front of the bundled notes app, with an
embedded SQLite store in the data folder. The first run creates the users
alice (role admin) and bob (role user) and prints their passwords once.
Open the printed URL, log in, post a note, look at your devices, log out.`)
	dataDir := fs.String("data", defaultDemoData, "`DIR` holding the demo's database, admin token, TOTP key file and static files")
	listen := fs.String("listen", defaultDemoListen, "`ADDR` of the gateway, loopback only; a free port is used if it is taken")
	adminListen := fs.String("admin-listen", defaultDemoAdminListen, "`ADDR` of the admin listener (metrics), loopback only; a free port is used if it is taken")
	logLevel := fs.String("log-level", "info", "log `LEVEL`: debug, info, warn or error (audit events are info)")
	if code, ok := parseFlagsOnly(fs, args, ""); !ok {
		return code
	}
	for flagName, addr := range map[string]string{"--listen": *listen, "--admin-listen": *adminListen} {
		loopback, err := checkListenAddr(addr)
		if err != nil {
			return usageError(fs, "%s: %v", flagName, err)
		}
		if !loopback {
			return usageError(fs, "%s %s: the demo serves plain HTTP with demo passwords, so it listens on loopback only", flagName, addr)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError(fs, "--log-level %q: want debug, info, warn or error", *logLevel)
	}
	logger := newLogger(e.stderr, level, "text")
	if err := demo(e, logger, *dataDir, *listen, *adminListen); err != nil {
		fmt.Fprintf(e.stderr, "cloakroom demo: %s\n", plainMessage(err))
		return exitFailure
	}
	return exitOK
}

func demo(e *env, logger *slog.Logger, dataDir, listen, adminListen string) error {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	staticDir := filepath.Join(dir, "static")
	if err := writeStatic(staticDir, demoapp.Static()); err != nil {
		return fmt.Errorf("static files: %w", err)
	}
	tokenFile := filepath.Join(dir, "admin-token")
	if err := ensureAdminToken(tokenFile); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	totpKeys := filepath.Join(dir, "totp-keys")
	if err := ensureTOTPKeys(totpKeys); err != nil {
		return fmt.Errorf("TOTP key file: %w", err)
	}

	// Every socket is opened here, before anything is printed, so the
	// printed URLs are the real ones.
	appSocket, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo app listener: %w", err)
	}
	public, err := listenOrFallback(listen, logger)
	if err != nil {
		appSocket.Close()
		return fmt.Errorf("gateway listener: %w", err)
	}
	admin, err := listenOrFallback(adminListen, logger)
	if err != nil {
		appSocket.Close()
		public.Close()
		return fmt.Errorf("admin listener: %w", err)
	}

	var appServer *http.Server
	cfg := defaultConfig()
	cfg.Listen = public.Addr().String()
	cfg.AdminListen = admin.Addr().String()
	cfg.Store = "sqlite://" + filepath.Join(dir, "cloakroom.db")
	cfg.DataDir = dir
	cfg.Static = staticDir
	cfg.AdminTokenFile = tokenFile
	// Second factors on the account page: authenticator apps (their
	// secrets sealed by the data folder's key file) and passkeys, whose
	// relying party is localhost on the printed port (localhost is a
	// secure context over plain HTTP).
	cfg.TOTPKeysFile = totpKeys
	cfg.WebAuthnRPID = "localhost"
	cfg.WebAuthnOrigins = []string{"http://localhost:" + portOf(public.Addr())}
	cfg.Upstreams = []string{"/api/=http://" + appSocket.Addr().String()}
	// The setup we recommend: the notes API believes the identity headers
	// only next to the gateway's internal JWT, checked against its JWKS.
	cfg.InternalJWT = true
	p, err := validate(cfg)
	if err == nil {
		var api http.Handler
		api, err = demoapp.Verified(demoapp.API(), demoapp.VerifyConfig{
			JWKSURL:  "http://" + public.Addr().String() + gateway.JWKSPath,
			Audience: "/api/", // the route's prefix, its default audience
			Issuer:   cfg.JWTIssuer,
		})
		if err == nil {
			appServer = demoServer(api, logger)
		}
	}
	if err != nil {
		appSocket.Close()
		public.Close()
		admin.Close()
		return err
	}
	lab := &demoLab{ctx: e.ctx, dataDir: dir, stdout: e.stdout, logger: logger}
	defer lab.stop()
	hooks := &serveHooks{
		public: public,
		admin:  admin,
		extra:  []listener{{name: "demo app", server: appServer, socket: appSocket}},
		ready: func(rt *gatewayRuntime, publicAddr, adminAddr net.Addr) ([]listener, error) {
			return demoReady(e, lab, rt, publicAddr, adminAddr, appSocket.Addr())
		},
	}
	return serve(e.ctx, p, logger, hooks)
}

// demoReady creates the demo users on the first run, gives the lab its
// chance, and prints what to open.
func demoReady(e *env, lab *demoLab, rt *gatewayRuntime, publicAddr, adminAddr, appAddr net.Addr) ([]listener, error) {
	ctx, dir := e.ctx, lab.dataDir
	type created struct{ name, roles, password string }
	var fresh []created
	var existing []string
	for _, u := range demoUsers {
		_, err := rt.Accounts.Get(ctx, u.name)
		switch {
		case err == nil:
			existing = append(existing, u.name)
			continue
		case !errors.Is(err, accounts.ErrNoSuchUser):
			return nil, fmt.Errorf("look up demo user %s: %w", u.name, err)
		}
		password := generatePassword()
		if err := rt.Accounts.Add(ctx, u.name, password, u.roles, u.name+"@demo.invalid"); err != nil {
			return nil, fmt.Errorf("create demo user %s: %w", u.name, err)
		}
		fresh = append(fresh, created{u.name, strings.Join(u.roles, ","), password})
	}

	gatewayURL := &url.URL{Scheme: "http", Host: "localhost:" + portOf(publicAddr)}
	adminURL := &url.URL{Scheme: "http", Host: adminAddr.String()}
	lab.gatewayURL = gatewayURL
	lab.appURL = &url.URL{Scheme: "http", Host: appAddr.String()}
	lab.accounts, lab.sessions = rt.Accounts, rt.Sessions
	if err := registerLab(lab); err != nil {
		return lab.listeners, fmt.Errorf("lab: %w", err)
	}

	w := e.stdout
	at := func(path string) string { return gatewayURL.JoinPath(path).String() }
	fmt.Fprintf(w, "\ncloakroom demo is running. Data folder: %s\n", dir)
	fmt.Fprintf(w, "(SQLite store, admin token, TOTP key file and static files; delete the folder to start from scratch)\n\n")
	fmt.Fprintf(w, "  App:                %s\n", at("/"))
	fmt.Fprintf(w, "  Login page:         %s\n", at("/auth/login"))
	fmt.Fprintf(w, "  Account & devices:  %s\n", at("/auth/account"))
	fmt.Fprintf(w, "  Metrics (admin):    %s\n", adminURL.JoinPath("/metrics"))
	fmt.Fprintf(w, "  Notes API upstream: http://%s (reached only through the gateway)\n\n", appAddr)
	fmt.Fprintf(w, "Passkeys and authenticator apps are on: add them on Account & devices. Once an account has\n"+
		"one, its password alone no longer signs in: the passkey (or the app's code) is asked after it.\n"+
		"The login page also offers \"Sign in with a passkey\" (relying party localhost, origin %s).\n\n", gatewayURL)
	if len(fresh) > 0 {
		fmt.Fprintln(w, "Demo users, created now. The passwords are stored hashed and shown only this once:")
		for _, u := range fresh {
			fmt.Fprintf(w, "  %-6s role %-6s password: %s\n", u.name, u.roles, u.password)
		}
		fmt.Fprintln(w)
	}
	if len(existing) > 0 {
		store := "sqlite://" + filepath.Join(dir, "cloakroom.db")
		fmt.Fprintf(w, "Demo users %s exist from an earlier run. Forgot a password? Set a new one with:\n", strings.Join(existing, " and "))
		fmt.Fprintf(w, "  cloakroom user passwd %s --store %s\n\n", existing[0], store)
	}
	lab.printInstructions(w)
	fmt.Fprintln(w, "Log in as alice, post a note, open Account & devices, log out. Press Ctrl+C to stop.")
	return lab.listeners, nil
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

// listenOrFallback listens on addr, or on a free port of the same host when
// addr's port is taken.
func listenOrFallback(addr string, logger *slog.Logger) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		return l, err
	}
	host, _, _ := net.SplitHostPort(addr)
	l, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return nil, err
	}
	logger.Warn("address in use, using a free port instead", "wanted", addr, "using", l.Addr().String())
	return l, nil
}

// writeStatic copies the embedded SPA into dir, replacing older copies so
// an upgraded binary serves its own front end.
func writeStatic(dir string, files fs.FS) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		src, err := files.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, src); err != nil {
			dst.Close()
			return err
		}
		return dst.Close()
	})
}

// ensureAdminToken creates an owner-only file with a random admin token
// when there is none.
func ensureAdminToken(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(f, rand.Text()+rand.Text()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ensureTOTPKeys writes a key file sealing the demo's TOTP secrets on
// the first run, and keeps it after.
func ensureTOTPKeys(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	line, err := seal.NewKeyLine("demo1")
	if err == nil {
		_, err = fmt.Fprintln(f, line)
	}
	if err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// demoServer wraps a handler for one more loopback server of the demo.
func demoServer(h http.Handler, logger *slog.Logger) *http.Server {
	return newServer(h, logger, nil, false)
}
