package lab

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/lab/guestbook"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// VaultSessionCookie is the vault app's session cookie. Its own name keeps
// it apart from the cloakroom app's: browsers share cookies between ports
// of one host.
const VaultSessionCookie = "__Host-Http-vault-session"

// SessionCookieName is the lab's cloakroom app's session cookie. Not the
// default name: `cloakroom demo` serves the notes app on localhost too,
// and with one name logging in to one would log you out of the other.
const SessionCookieName = "__Host-Http-lab-session"

// vaultCapture is where the jwt app's token comes from: its login answer.
const vaultCapture = "POST /api/login token"

// VaultFlags are the `cloakroom serve` flags that put the jwt app's API
// in vault mode; startVault configures the same (docs/migrate.md).
var VaultFlags = []string{
	"--vault", "/api/",
	"--vault-capture", vaultCapture,
	"--vault-header", "Authorization: Bearer",
	"--vault-user-claim", "sub",
}

// startVault builds the vault app: the jwt app's own API (ModeJWT, not a
// line changed) on a loopback port as the gateway's upstream, its own page
// (config.json still says "jwt") served by the gateway, and the /api/
// route in vault mode. It returns the gateway's public handler.
func (l *Lab) startVault(ctx context.Context, users []guestbook.User, logger *slog.Logger) (http.Handler, error) {
	var err error
	if l.vaultApp, err = guestbook.New(guestbook.Config{Mode: guestbook.ModeJWT, Users: users}); err != nil {
		return nil, err
	}
	upstream, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.cleanups = append(l.cleanups, ignoreClosed(upstream.Close))
	l.serve(upstream, l.vaultApp.API(), logger)
	apiURL, _ := url.Parse("http://" + upstream.Addr().String())

	mem := memstore.New(memstore.Config{})
	l.cleanups = append(l.cleanups, mem.Close)
	keys, err := seal.Generate("lab")
	if err != nil {
		return nil, err
	}
	capture, err := vault.ParseCapture(vaultCapture)
	if err != nil {
		return nil, err
	}
	// The jwt app's page, unchanged: it signs in at /api/login, keeps what
	// the answer's token field holds in localStorage and sends it as a
	// bearer token.
	static, err := l.staticDir(guestbook.PageConfig{Mode: guestbook.ModeJWT})
	if err != nil {
		return nil, err
	}
	st, err := gateway.Assemble(ctx, gateway.Parts{
		Sessions: cloakroom.Config{Store: mem, CookieName: VaultSessionCookie, Logger: logger},
		// The gateway's own accounts are unused: the app signs its users in.
		AccountStore: memaccounts.New(),
		Accounts:     accounts.Config{Throttle: memaccounts.NewThrottle(0), Logger: logger},
		Admission:    signin.Config{Logger: logger},
		Vault: &vault.Config{
			Sealer: keys, Logger: logger,
			Routes: []vault.Route{{Prefix: "/api/", Capture: []vault.Capture{capture}, UserClaim: "sub"}},
		},
		Gateway: gateway.Config{
			Routes:      []proxy.Route{{Prefix: "/api/", Upstream: apiURL}},
			Static:      static,
			PublicPaths: []string{"/"},
			// Like the jwt app, no Content-Security-Policy: the lab shows
			// what the payload can and cannot take when it runs.
			CSP: gateway.CSPOff,
		},
	})
	if err != nil {
		return nil, err
	}
	// Its stream watchers read the store: stopped before the store closes.
	l.cleanups = append(l.cleanups, st.Close)
	l.vaultSessions, l.vault = st.Sessions, st.Vault
	return st.Gateway.Handler(), nil
}
