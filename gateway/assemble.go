package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/forwardauth"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// Parts say what [Assemble] builds a gateway from: the configuration of
// each part, without the links between them, which Assemble sets itself.
// `cloakroom serve` and the lab are assembled this way.
type Parts struct {
	// Sessions configures the session manager; its Store is required.
	// Assemble sets OnLoad and Logger (the gateway times the lookups and
	// writes the audit lines), and Forbidden to CrossSiteRefused when
	// unset.
	Sessions cloakroom.Config
	// AccountStore keeps the local accounts. Required.
	AccountStore accounts.Store
	// Accounts configures the account service; its Throttle is required.
	// Assemble sets RevokeSessions to the session manager's.
	Accounts accounts.Config
	// Admission configures the sign-in rules; Assemble sets its Sessions.
	Admission signin.Config
	// Vault, when set, puts the vault's routes in vault mode; Assemble
	// sets its Admission, and the session manager's CSRFProof and Activity
	// to its routes' (vault.SessionRules). Each of its routes must be one of Gateway.Routes.
	Vault *vault.Config
	// OIDC, when set, signs users in at OpenID providers (discovery runs
	// in Assemble); Assemble sets its Admission.
	OIDC *oidcbff.Config
	// Relay are route prefixes that receive the OpenID user's access token
	// (token relay) instead of the internal JWT. They need OIDC.
	Relay []string
	// ForwardAuth, when set, answers proxies' forward-auth decisions;
	// Assemble sets its Sessions, Signer (Gateway.Signer), AuthPrefix and
	// Logger.
	ForwardAuth *forwardauth.Config
	// Binding, when set, binds sessions to their browsers' keys (package
	// dbsc); its Key is required. Assemble sets its Store (the session
	// store), Logger and Now (the gateway's), its endpoints under the
	// gateway's AuthPrefix, and Require from RequireBinding; it sets the
	// session manager's Binding and the admission's Bind to the binder's.
	Binding *dbsc.Config
	// RequireBinding makes some requests need a bound session: the
	// gateway refuses them (401, or the sign-in page) for sessions that
	// never registered a key, so browsers without device-bound sessions
	// cannot use them. Needs Binding.
	RequireBinding BindingRequirement
	// Gateway is the rest of the gateway's configuration. Assemble sets
	// Sessions, Admission, Accounts, Vault, OIDC and Metrics, and
	// registers the vault's and the relay's modes on a copy of Routes.
	Gateway Config
}

// BindingRequirement says which requests need a session bound to its
// device; see Parts.RequireBinding.
type BindingRequirement struct {
	// Roles: sessions of users with one of these roles (compared
	// exactly), on every request.
	Roles []string
	// Paths: requests under one of these path prefixes (on a segment
	// boundary), whoever the user.
	Paths []string
}

// required reports whether a request of s needs a bound session.
func (req BindingRequirement) required(r *http.Request, s *cloakroom.Session) bool {
	for _, p := range req.Paths {
		if httpx.PathUnder(r.URL.Path, p) {
			return true
		}
	}
	if len(req.Roles) == 0 {
		return false
	}
	return slices.ContainsFunc(signin.Roles(s), func(role string) bool { return slices.Contains(req.Roles, role) })
}

// Stack is a gateway with the parts it is built on.
type Stack struct {
	Gateway   *Gateway
	Sessions  *cloakroom.Manager
	Accounts  *accounts.Service
	Admission *signin.Admission
	Vault     *vault.Vault    // nil without one
	OIDC      *oidcbff.Client // nil without one
	Binder    *dbsc.Binder    // nil without one
}

// Assemble builds every part of a gateway once, in the order they depend
// on each other: the metrics, the session manager, the account service,
// the admission, the vault and the OpenID client, the routes with their
// modes, the gateway.
func Assemble(ctx context.Context, p Parts) (_ *Stack, err error) {
	st := &Stack{}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	metrics, err := NewMetrics(nil)
	if err != nil {
		return nil, err
	}
	if p.Sessions.Forbidden == nil {
		p.Sessions.Forbidden = CrossSiteRefused // JSON to scripts, a page to navigations
	}
	if p.Gateway.Logger == nil {
		p.Gateway.Logger = p.Sessions.Logger // before the manager's is narrowed to warnings
	}
	metrics.ConfigureSessions(&p.Sessions)
	if p.Vault != nil {
		// The placeholder proves a call is not forged, and only calls that
		// carry it keep a vaulted session alive: the manager asks the
		// vault's routes before any handler runs.
		rules, err := vault.NewSessionRules(p.Vault.Routes)
		if err != nil {
			return nil, err
		}
		rules.Configure(&p.Sessions)
	}
	req := p.RequireBinding
	if p.Binding == nil && (len(req.Roles) > 0 || len(req.Paths) > 0) {
		return nil, fmt.Errorf("%w: requiring bound sessions needs device binding", ErrInvalidConfig)
	}
	if p.Binding != nil {
		// Before the manager: its binding hook is the binder's check,
		// and every way in offers registration through the admission.
		bc := *p.Binding
		auth := cmp.Or(p.Gateway.AuthPrefix, DefaultAuthPrefix)
		bc.Store, bc.Logger, bc.Now = p.Sessions.Store, p.Gateway.Logger, p.Sessions.Now
		bc.RegisterPath, bc.RefreshPath = cmp.Or(bc.RegisterPath, auth+"/dbsc/register"), cmp.Or(bc.RefreshPath, auth+"/dbsc/refresh")
		bc.SameSite = cmp.Or(bc.SameSite, p.Sessions.SameSite)
		if len(req.Roles) > 0 || len(req.Paths) > 0 {
			bc.Require = req.required
		}
		if st.Binder, err = dbsc.New(bc); err != nil {
			return nil, err
		}
		p.Sessions.Binding = st.Binder.Check
		p.Admission.Bind = st.Binder.Offer
	}
	if st.Sessions, err = cloakroom.New(p.Sessions); err != nil {
		return nil, err
	}
	p.Accounts.RevokeSessions = st.Sessions.RevokeUser
	st.Accounts = accounts.New(p.AccountStore, p.Accounts)
	// Every way in (passwords, providers, the vault) admits through one.
	p.Admission.Sessions = st.Sessions
	if st.Admission, err = signin.New(p.Admission); err != nil {
		return nil, err
	}
	routes := slices.Clone(p.Gateway.Routes)
	if p.Vault != nil {
		p.Vault.Admission = st.Admission
		if st.Vault, err = vault.New(*p.Vault); err != nil {
			return nil, err
		}
		if err := proxy.SetModes(routes, st.Vault.Modes()); err != nil {
			return nil, fmt.Errorf("%w: vault: %w", ErrInvalidConfig, err)
		}
	}
	switch {
	case p.OIDC != nil:
		p.OIDC.Admission = st.Admission
		if st.OIDC, err = oidcbff.New(ctx, *p.OIDC); err != nil {
			return nil, err
		}
		relay := make(map[string]proxy.Mode, len(p.Relay))
		for _, prefix := range p.Relay {
			relay[prefix] = st.OIDC.Relay()
		}
		if err := proxy.SetModes(routes, relay); err != nil {
			return nil, fmt.Errorf("%w: token relay: %w", ErrInvalidConfig, err)
		}
	case len(p.Relay) > 0:
		return nil, fmt.Errorf("%w: token relay needs OpenID providers", ErrInvalidConfig)
	}
	cfg := p.Gateway
	if p.ForwardAuth != nil {
		fa := *p.ForwardAuth
		fa.Sessions, fa.Signer, fa.AuthPrefix, fa.Logger = st.Sessions, cfg.Signer, cmp.Or(cfg.AuthPrefix, DefaultAuthPrefix), p.Gateway.Logger
		if cfg.ForwardAuth, err = forwardauth.New(fa); err != nil {
			return nil, err
		}
	}
	cfg.Sessions, cfg.Admission, cfg.Accounts, cfg.Metrics = st.Sessions, st.Admission, st.Accounts, metrics
	cfg.Vault, cfg.OIDC, cfg.Routes, cfg.Binder = st.Vault, st.OIDC, routes, st.Binder
	if st.Gateway, err = New(cfg); err != nil {
		return nil, err
	}
	return st, nil
}

// Close releases what the stack holds: the gateway's static folder and
// the session manager's watchers (which read the store: close the store
// after it).
func (s *Stack) Close() error {
	var errs []error
	if s.Gateway != nil {
		errs = append(errs, s.Gateway.Close())
	}
	if s.Sessions != nil {
		errs = append(errs, s.Sessions.Close())
	}
	return errors.Join(errs...)
}
