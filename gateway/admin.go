package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/internal/httpjson"
)

// readyTimeout bounds the store check behind /readyz.
const readyTimeout = time.Second

// readyProbeUser is the user whose generation /readyz reads from stores
// that have no Ping: any read proves the store answers.
const readyProbeUser = "cloakroom-readiness-probe"

// adminAPI is the admin listener: health, readiness, metrics, and the
// admin API behind a bearer token.
type adminAPI struct {
	base
	token    string
	registry *prometheus.Registry
	accounts *accounts.Service
}

// adminHandlerFunc is an admin endpoint: it writes its success response
// itself and returns errors for adapt to write.
type adminHandlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *adminAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))

	api := func(pattern string, h adminHandlerFunc) {
		mux.Handle(pattern, a.authorize(a.adapt(h)))
	}
	api("GET /admin/users/{user}/sessions", a.listSessions)
	api("DELETE /admin/users/{user}/sessions", a.revokeUser)
	api("DELETE /admin/users/{user}/sessions/{handle}", a.revokeDevice)
	api("POST /admin/sessions/revoke-all", a.revokeEveryone)
	api("GET /admin/users/{user}/factors", a.listFactors)
	api("DELETE /admin/users/{user}/factors", a.resetFactors)
	api("DELETE /admin/users/{user}/passkeys/{id}", a.removePasskey)
	api("/admin/", func(w http.ResponseWriter, r *http.Request) error {
		return newProblem(http.StatusNotFound, "not_found", "No such admin endpoint.")
	})
	return mux
}

// readyz answers 200 when the session store answers within a second.
func (a *adminAPI) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	store := a.sessions.Store()
	err := a.timeStore("ping", func() error {
		var err error
		if p, ok := store.(cloakroom.Pinger); ok {
			err = p.Ping(ctx)
		} else {
			_, err = store.Generation(ctx, readyProbeUser)
		}
		if err != nil {
			return errors.Join(cloakroom.ErrStoreUnavailable, err)
		}
		return nil
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		a.log.WarnContext(r.Context(), "not ready", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("session store unavailable\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// adminAuth guards the admin API with the bearer token. Without a
// configured token the API does not exist (404), so a forgotten token file
// cannot leave it open.
func (a *adminAPI) authorize(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(a.token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.token == "" {
			httpjson.Error(w, http.StatusNotFound, "not_found", "The admin API is disabled: no admin token is configured.")
			return
		}
		got, ok := bearerToken(r.Header.Get("Authorization"))
		// Hashing both sides makes the comparison constant-time whatever
		// the lengths.
		gotSum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(gotSum[:], want[:]) != 1 {
			a.log.WarnContext(r.Context(), "admin request refused", "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr, "token_present", ok)
			w.Header().Set("WWW-Authenticate", `Bearer realm="cloakroom-admin"`)
			httpjson.Error(w, http.StatusUnauthorized, "unauthorized", "A valid admin bearer token is required.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive (RFC 9110); the token must be
// non-empty printable ASCII.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || !printableASCII(token) {
		return "", false
	}
	return token, true
}

// adapt writes the error an admin endpoint returns, as JSON through the
// gateway's error writer; a missing session or user is 404 here, and every
// failure on the server's side is logged.
func (a *adminAPI) adapt(h adminHandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		err := h(w, r)
		switch {
		case err == nil:
			return
		case errors.Is(err, cloakroom.ErrNotFound), errors.Is(err, accounts.ErrNoSuchUser):
			err = newProblem(http.StatusNotFound, "not_found", "No such session or user.")
		case errors.Is(err, cloakroom.ErrInvalidInput), errors.Is(err, accounts.ErrInvalidInput):
			err = newProblem(http.StatusBadRequest, "bad_request", "Invalid input.")
		}
		if p, _ := problemOf(err); p.Status >= 500 {
			a.log.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		a.fail(w, r, false, err)
	})
}

// pathUser returns the user ID of the {user} path value, canonicalised as
// the login does (any case names the same account), refusing malformed
// names.
func (a *adminAPI) pathUser(r *http.Request) (string, error) {
	user := r.PathValue("user")
	if user == "" || len(user) > maxUsernameLen || !utf8.ValidString(user) || strings.ContainsFunc(user, isControl) {
		return "", newProblem(http.StatusBadRequest, "bad_request", "The user name is malformed.")
	}
	return a.accounts.SessionUserID(r.Context(), user)
}

func (a *adminAPI) audit(r *http.Request, kind, user string, err error, extra ...slog.Attr) {
	a.auditRevocation(r, kind, user, err, append([]slog.Attr{slog.String("by", "admin"), slog.String("remote", r.RemoteAddr)}, extra...)...)
}

func (a *adminAPI) listSessions(w http.ResponseWriter, r *http.Request) error {
	user, err := a.pathUser(r)
	if err != nil {
		return err
	}
	var devices []cloakroom.Device
	if err := a.timeStore("list", func() (err error) {
		devices, err = a.sessions.Devices(r.Context(), user)
		return err
	}); err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"user": user, "sessions": devices})
	return nil
}

func (a *adminAPI) revokeUser(w http.ResponseWriter, r *http.Request) error {
	user, err := a.pathUser(r)
	if err != nil {
		return err
	}
	err = a.timeStore("revoke_user", func() error { return a.sessions.RevokeUser(r.Context(), user) })
	a.audit(r, revokeAdminUser, user, err)
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *adminAPI) revokeDevice(w http.ResponseWriter, r *http.Request) error {
	user, err := a.pathUser(r)
	if err != nil {
		return err
	}
	handle := r.PathValue("handle")
	if !cloakroom.ValidHandle(handle) {
		return newProblem(http.StatusBadRequest, "bad_request", "The session handle is malformed.")
	}
	err = a.timeStore("revoke_device", func() error { return a.sessions.RevokeDevice(r.Context(), user, handle) })
	a.audit(r, revokeAdminDevice, user, err, slog.String("handle", handle))
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminRevokeEveryone ends every session at once: of every user, local,
// from a provider or behind the vault, and anonymous ones, with their
// sealed provider tokens, on every node, before it answers.
func (a *adminAPI) revokeEveryone(w http.ResponseWriter, r *http.Request) error {
	var epoch uint64
	err := a.timeStore("revoke_everyone", func() (err error) {
		epoch, err = a.sessions.RevokeEveryone(r.Context())
		return err
	})
	a.audit(r, revokeAdminAll, "*", err, slog.Uint64("epoch", epoch))
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"revoked": "everyone", "epoch": epoch})
	return nil
}

// factorUser returns the local account the {user} path value names, in
// its stored spelling; a name no local account could have (a provider's
// user ID) is ErrNoSuchUser: only local accounts have second factors here.
func (a *adminAPI) factorUser(r *http.Request) (string, error) {
	user, err := a.pathUser(r)
	if err != nil {
		return "", err
	}
	if accounts.ValidateName(user) != nil {
		return "", accounts.ErrNoSuchUser
	}
	return user, nil
}

// listFactors is GET /admin/users/{user}/factors: whether the account has
// TOTP, since when, how many recovery codes are left, and its passkeys
// (name, created, last used, sign count, backup flags); never a secret or
// a key.
func (a *adminAPI) listFactors(w http.ResponseWriter, r *http.Request) error {
	user, err := a.factorUser(r)
	if err != nil {
		return err
	}
	info, err := a.accounts.SecondFactors(r.Context(), user)
	if err != nil {
		return err
	}
	passkeys, err := a.accounts.Passkeys(r.Context(), user)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, struct {
		User string `json:"user"`
		accounts.SecondFactorInfo
		Passkeys []accounts.PasskeyInfo `json:"passkeys"`
	}{user, info, passkeys})
	return nil
}

// resetFactors is DELETE /admin/users/{user}/factors: the account loses
// every factor besides its password, at once: its TOTP factor, recovery
// codes and passkeys (a lost or stolen phone holds the app and may hold a
// synced passkey). It signs in with the password alone until it enrols
// again. The user's sessions continue: they were signed in with the
// factor, and the user who lost a phone should not also be signed out
// everywhere (the admin ends them with DELETE .../sessions when the
// account may be compromised). A sign-in waiting between its factors
// cannot be finished.
func (a *adminAPI) resetFactors(w http.ResponseWriter, r *http.Request) error {
	user, err := a.factorUser(r)
	if err != nil {
		return err
	}
	removed, err := a.accounts.ResetFactors(r.Context(), user)
	outcome := outcomeSuccess
	switch {
	case errors.Is(err, accounts.ErrNoSuchUser):
		outcome = "no_such_user"
	case err != nil:
		outcome = outcomeError
	case !removed.Any():
		outcome = "no_factor"
	}
	attrs := []slog.Attr{slog.String("outcome", outcome), slog.String("user", user), slog.String("by", "admin"), slog.String("remote", r.RemoteAddr),
		slog.Bool("totp", removed.TOTP), slog.Int("passkeys", removed.Passkeys)}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "second factor reset", attrs...)
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"user": user, "reset": removed.Any(), "totp": removed.TOTP, "passkeys": removed.Passkeys})
	return nil
}

// removePasskey is DELETE /admin/users/{user}/passkeys/{id}: one passkey
// (its id as GET .../factors lists it) no longer signs the user in; the
// other factors and the sessions stay.
func (a *adminAPI) removePasskey(w http.ResponseWriter, r *http.Request) error {
	user, err := a.factorUser(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if len(id) > 256 {
		return newProblem(http.StatusBadRequest, "bad_request", "The passkey id is malformed.")
	}
	err = a.accounts.RemovePasskey(r.Context(), user, id)
	outcome := outcomeSuccess
	switch {
	case errors.Is(err, accounts.ErrNoSuchUser):
		outcome = "no_such_user"
	case errors.Is(err, accounts.ErrNoSuchPasskey):
		outcome = "no_such_passkey"
	case err != nil:
		outcome = outcomeError
	}
	attrs := []slog.Attr{slog.String("outcome", outcome), slog.String("user", user), slog.String("passkey", id),
		slog.String("by", "admin"), slog.String("remote", r.RemoteAddr)}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "passkey removal", attrs...)
	if errors.Is(err, accounts.ErrNoSuchPasskey) {
		return newProblem(http.StatusNotFound, "not_found", "The user has no passkey with that id.")
	}
	if err != nil {
		return err
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"user": user, "removed": id})
	return nil
}
