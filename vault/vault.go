package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
)

// Session value keys. The token is sealed; the placeholder is not a
// secret (it grants nothing without the cookie) but is compared in
// constant time anyway.
const (
	keyToken       = "vault.token"
	keyPlaceholder = "vault.placeholder"
	keyRoute       = "vault.route"
)

// placeholderPrefix starts every placeholder, so that it is recognisable
// in an SPA's storage and never JWT-shaped.
const placeholderPrefix = "cloakroom-vault."

// Shared header values, assigned without allocating; net/http only reads
// them.
var (
	gzipOnly     = []string{"gzip"}
	identityOnly = []string{"identity"}
)

// Vault serves the vault routes. Create one with [New]; it is safe for
// concurrent use.
type Vault struct {
	admission *signin.Admission
	sessions  *cloakroom.Manager
	sealer    Sealer
	log       *slog.Logger
	routes    map[string]*route

	leaks  *prometheus.CounterVec
	events *prometheus.CounterVec
}

// Event label values of cloakroom_vault_events_total.
const (
	eventCapture = "capture"
	eventRefresh = "refresh"
	eventDrop    = "drop"
	eventLogout  = "logout"
	// eventForgotten: a call showed the SPA forgot its token (EndForgotten).
	eventForgotten = "forgotten"
	eventRefused   = "refused"
	// eventRefusedResponse: an upstream answer the vault could not check,
	// answered with 502 instead.
	eventRefusedResponse = "refused_response"
)

// New checks cfg and returns a Vault. Every problem is reported at once,
// each wrapping ErrInvalidConfig.
func New(cfg Config) (*Vault, error) {
	routes, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	v := &Vault{
		admission: cfg.Admission, sessions: cfg.Admission.Sessions(), sealer: cfg.Sealer, log: cfg.Logger, routes: map[string]*route{},
		leaks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_vault_leaks_caught_total",
			Help: "Tokens the vault found and replaced in responses outside their configured fields, by route.",
		}, []string{"route"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_vault_events_total",
			Help: "Vault events by route and kind: capture, refresh, drop (upstream 401), logout (the app's logout path), forgotten (a call without the placeholder ended the session), refused (a token that could not be vaulted), refused_response (an upstream answer that could not be checked, answered with 502).",
		}, []string{"route", "event"}),
	}
	for _, rt := range routes {
		rt.v = v
		v.routes[rt.Prefix] = rt
		v.leaks.WithLabelValues(rt.label)
		for _, e := range []string{eventCapture, eventRefresh, eventDrop, eventLogout, eventForgotten, eventRefused, eventRefusedResponse} {
			v.events.WithLabelValues(rt.label, e)
		}
	}
	return v, nil
}

// Collectors returns the vault's metrics, for the gateway's registry.
func (v *Vault) Collectors() []prometheus.Collector {
	return []prometheus.Collector{v.leaks, v.events}
}

// Admission returns the admission the vault signs users in through.
func (v *Vault) Admission() *signin.Admission { return v.admission }

// Modes returns the vault's upstream mode of each of its routes, by
// prefix, to register on the proxy's routes (proxy.Route.Mode).
func (v *Vault) Modes() map[string]proxy.Mode {
	out := make(map[string]proxy.Mode, len(v.routes))
	for prefix, rt := range v.routes {
		out[prefix] = rt
	}
	return out
}

// Anonymous is true: a vault route takes requests without a session (the
// app's own login and public calls), for the backend to judge
// ([proxy.Mode]).
func (rt *route) Anonymous() bool { return true }

// Prepare readies one request of the route ([proxy.Mode]): it strips token
// parameters, decides whether to attach the vaulted token, and has the
// proxy go on with c and a [proxy.Exchange] that attaches it and inspects
// the answer. r must have passed through the session middleware.
func (rt *route) Prepare(w http.ResponseWriter, r *http.Request, c proxy.Call) (proxy.Call, bool) {
	v := rt.v
	if err := rt.stripParams(w, r); err != nil {
		v.refuseBody(w, r, rt, err)
		return c, false
	}
	ctx := r.Context()
	s := v.sessions.Session(r)
	x := &exchange{v: v, rt: rt, s: s, r: r}
	if !x.loadToken(ctx) {
		// The session was ended as untrustworthy (its ID may be a local
		// account's): this call goes on anonymous, not vouched for.
		c = proxy.Call{}
	}
	if c.Lifetime != nil {
		// As on other routes, what outlives the exchange ends with the
		// session; unless this very call ended it (the app's own logout,
		// which the vault lets through once).
		c.Lifetime = func(ctx context.Context) (context.Context, context.CancelFunc) {
			if !s.LoggedIn() {
				return context.WithCancel(ctx)
			}
			return s.Watch(ctx)
		}
	}
	if rt.EndForgotten && x.live && forgotten(r, rt) {
		// The SPA logged out by clearing its storage: end the session
		// now rather than at its idle deadline.
		ref := s.Ref()
		if err := s.Logout(ctx); err != nil {
			v.log.LogAttrs(ctx, slog.LevelError, "vault: ending a forgotten session failed", slog.String("route", rt.label), slog.String("error", err.Error()))
		}
		x.live = false
		v.event(ctx, rt, eventForgotten, "vault session forgotten by the app", slog.String("user", x.user), slog.String("session", ref), slog.String("path", r.URL.Path))
	}
	// The placeholder or token the client sent: it decides attachment
	// and is never forwarded as it is.
	if x.token != "" && (rt.AttachOnCookie || placeholderPresented(r.Header.Values(rt.Header), x.placeholder)) {
		x.attach = true
	}
	x.capture = rt.captureOf(r)
	if x.capture != nil {
		// The app checks the password during the call: pin the global
		// epoch, and the session's user when there is one, now, so that a
		// revocation meanwhile (of everyone, or logout everywhere on
		// another device, an administrator) makes a login the answer
		// starts fail rather than outlive it. Which other user the answer
		// may name is not known before it comes.
		var err error
		if x.epochPin, err = v.sessions.PinEpoch(ctx); err == nil && s.LoggedIn() {
			x.pin, err = v.sessions.Pin(ctx, s.UserID())
			x.pinned = s.UserID()
		}
		if err != nil {
			httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "Signing in is not possible right now. Try again shortly.")
			return c, false
		}
	}
	if rt.hasLogout && x.live {
		if _, pattern := rt.logout.Handler(r); pattern != "" {
			// Ended before the call, so a failed upstream cannot keep it
			// alive; the token still goes with this one call.
			ref := s.Ref()
			if err := s.Logout(ctx); err != nil {
				v.log.LogAttrs(ctx, slog.LevelError, "vault: logout failed", slog.String("route", rt.label), slog.String("error", err.Error()))
				httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "The session could not be ended. Try again shortly.")
				return c, false
			}
			x.live = false
			v.event(ctx, rt, eventLogout, "vault logout", slog.String("user", x.user), slog.String("session", ref), slog.String("path", r.URL.Path))
		}
	}
	x.acceptGzip = acceptsGzip(r.Header)
	c.Exchange = x
	return c, true
}

// Rewrite adjusts the outbound request: the client's token header out, the
// vaulted token in when it goes with this call ([proxy.Exchange]).
func (x *exchange) Rewrite(out *http.Request) {
	deleteHeader(out.Header, x.rt.Header)
	if x.attach {
		out.Header.Set(x.rt.Header, x.authValue)
	}
	// Pieces of a body, each checked alone, could make up a token: the
	// vault always asks for the whole body.
	delete(out.Header, "Range")
	delete(out.Header, "If-Range")
	// Bodies are checked decoded, so only encodings the vault can decode
	// are offered.
	if x.acceptGzip {
		out.Header["Accept-Encoding"] = gzipOnly
	} else {
		out.Header["Accept-Encoding"] = identityOnly
	}
}

// deleteHeader removes name from h in every spelling a backend may take
// for it: any case, and "_" for "-" (CGI-style servers map X_Token and
// X-Token to one variable), so a client cannot smuggle a token past the
// vault in a variant.
func deleteHeader(h http.Header, name string) {
	for k := range h {
		if len(k) != len(name) {
			continue
		}
		same := true
		for i := 0; i < len(k) && same; i++ {
			a, b := k[i], name[i]
			if a == '_' {
				a = '-'
			}
			if b == '_' {
				b = '-'
			}
			same = a == b || 'A' <= a && a <= 'Z' && a+'a'-'A' == b || 'a' <= a && a <= 'z' && a-'a'+'A' == b
		}
		if same {
			delete(h, k)
		}
	}
}

// exchange is the state of one request on a vault route.
type exchange struct {
	v  *Vault
	rt *route
	s  *cloakroom.Session
	r  *http.Request

	live        bool   // the session is logged in and holds this route's token
	user        string // the session's user
	token       string // the vaulted token, opened; "" without one
	tokenBytes  []byte // the same, for the body checks
	placeholder string
	attach      bool          // the token goes upstream with this call
	capture     *Capture      // the call is a configured capture request
	pin         cloakroom.Pin // the session's user, taken before a capture call
	pinned      string        // the user of pin, "" for none
	epochPin    cloakroom.Pin // the epoch only, for a capture of another user
	acceptGzip  bool          // the client takes gzip, so the upstream may send it (the vault decodes it)
	authValue   string        // the header value to attach; see setToken
}

// setToken makes token the exchange's vaulted token: authValue holds the
// route's scheme and the token, and token is a substring of it, so opening
// costs one string.
func (x *exchange) setToken(token []byte) {
	x.authValue = x.rt.scheme + string(token)
	x.token, x.tokenBytes = x.authValue[len(x.rt.scheme):], token
}

// userOf returns the user ID of a token, in the route's namespace (see
// signin.VaultUser): the app's users choose their own names, so an ID of
// the claim alone could be a local account's, whose sessions the app's
// user would then list and end, and whose name other routes would receive.
func (rt *route) userOf(token string) (string, error) {
	claim, err := userFromToken(token, rt.UserClaim)
	if err != nil {
		return "", err
	}
	if len(rt.Prefix)+1+len(claim) > maxUserLength {
		return "", fmt.Errorf("%w: claim %q is too long", ErrNoUser, rt.UserClaim)
	}
	return signin.VaultUser(rt.Prefix, claim), nil
}

// captureOf returns the capture configured for r, nil if none.
func (rt *route) captureOf(r *http.Request) *Capture {
	if !rt.captureMethods[r.Method] && !rt.captureMethods[""] {
		return nil
	}
	if h, pattern := rt.capture.Handler(r); pattern != "" {
		if i, ok := h.(captureIndex); ok {
			return &rt.captures[i]
		}
	}
	return nil
}

// errRevokedDuringLogin: the user's sessions were revoked while the app
// checked the login that a capture would have started a session for.
var errRevokedDuringLogin = errors.New("vault: the user's sessions were revoked during the login")

// aad binds a sealed token to its route, its user and its session's
// placeholder (random per login): copied into another session, it does
// not open. The placeholder is known before the login, so the token is
// stored in the login's own write.
func (x *exchange) aad(user, placeholder string) []byte {
	b := make([]byte, 0, len(x.rt.tokenAAD)+len(user)+1+len(placeholder))
	b = append(b, x.rt.tokenAAD...)
	b = append(b, user...)
	b = append(b, 0)
	return append(b, placeholder...)
}

// loadToken opens the session's vaulted token, if it holds one for this
// route. A token that no longer opens (its key retired, or tampered with)
// ends the session: the browser must log in again. It returns false then.
func (x *exchange) loadToken(ctx context.Context) bool {
	s := x.s
	if !s.LoggedIn() || s.GetString(keyRoute) != x.rt.Prefix {
		return true
	}
	sealed := s.GetString(keyToken)
	if sealed == "" {
		return true
	}
	x.user = s.UserID()
	x.placeholder = s.GetString(keyPlaceholder)
	token, err := x.v.sealer.Open(sealed, x.aad(x.user, x.placeholder))
	if err != nil {
		x.v.log.LogAttrs(ctx, slog.LevelWarn, "vault: stored token does not open; ending the session",
			slog.String("route", x.rt.label), slog.String("user", x.user), slog.String("error", err.Error()))
		if err := s.Logout(ctx); err != nil {
			x.v.log.LogAttrs(ctx, slog.LevelError, "vault: logout failed", slog.String("error", err.Error()))
		}
		return false
	}
	x.live = true
	x.setToken(token)
	return true
}

// forgotten reports whether r is a call of the SPA's own script (same
// origin, not a navigation) that carries no placeholder: the SPA has
// forgotten its token ([Route.EndForgotten]). A value shaped like a
// placeholder, even another session's, is an old tab, not a logout.
func forgotten(r *http.Request, rt *route) bool {
	if r.Header.Get("Sec-Fetch-Site") != "same-origin" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode == "" || mode == "navigate" {
		return false
	}
	v, ok := presentedValue(r.Header.Values(rt.Header))
	return !ok || !strings.HasPrefix(v, placeholderPrefix)
}

func newPlaceholder() string {
	var b [18]byte
	rand.Read(b[:])
	return placeholderPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// modifyResponse runs on the upstream's answer before anything of it
// reaches the client.
func (x *exchange) ModifyResponse(res *http.Response) error {
	ctx := x.r.Context()
	rt := x.rt
	if res.StatusCode == http.StatusUnauthorized && x.attach && x.live {
		ref := x.s.Ref()
		// The backend no longer takes the token: forget it and end the
		// session, so the SPA's next start shows its login.
		if err := x.s.Logout(ctx); err != nil {
			x.v.log.LogAttrs(ctx, slog.LevelError, "vault: logout after upstream 401 failed", slog.String("error", err.Error()))
		}
		x.live = false
		x.v.event(ctx, rt, eventDrop, "vault token dropped", slog.String("user", x.user), slog.String("session", ref), slog.String("path", x.r.URL.Path))
	}
	if x.capture != nil {
		x.checkRedirect(ctx, res)
	}
	if !hasBody(res, x.r.Method) {
		x.guardHeaders(ctx, res.Header, []string{x.token})
		return nil
	}
	cs, reason := uncheckable(res)
	if reason != "" {
		x.refuse(ctx, res, reason)
		return nil
	}
	src, err := undo(res.Body, cs)
	if err != nil {
		x.refuse(ctx, res, err.Error())
		return nil
	}
	ok2xx := res.StatusCode >= 200 && res.StatusCode < 300
	var capture *Capture
	if ok2xx {
		capture = x.capture
	}
	whole, prefix, err := readsWhole(res, src, capture != nil)
	if err != nil {
		x.refuse(ctx, res, err.Error())
		return nil
	}
	if !whole {
		x.streamBody(ctx, res, prefix, src, cs.n > 0)
		return nil
	}
	body, err := readBody(res, prefix, src, cs.n > 0, rt.MaxBody)
	if err == nil && startsUTF16(body) {
		err = errUTF16
	}
	if err != nil {
		x.refuse(ctx, res, err.Error())
		return nil
	}
	body = bytes.TrimPrefix(body, bomUTF8)
	previous := x.token
	var found []stringValue
	var edits []edit
	if capture != nil || (ok2xx && x.attach && x.live && containsAny(body, rt.keys)) {
		if found, err = findStrings(body, rt.paths); err != nil {
			if errors.Is(err, errUncheckable) {
				x.refuse(ctx, res, err.Error())
				return nil
			}
			if capture != nil {
				// It may well carry the token, where the vault cannot
				// take it out.
				x.refuse(ctx, res, "the answer to a capture request is not JSON")
				return nil
			}
			found = nil // not JSON after all: the leak guard below still runs
		}
		if edits, err = x.vaultTokens(ctx, res.Header, body, found, capture); err != nil {
			if errors.Is(err, errRevokedDuringLogin) {
				replaceResponse(res, http.StatusUnauthorized, "unauthorized", "The sessions of this account were ended while signing in. Sign in again.")
				return nil
			}
			replaceResponse(res, http.StatusServiceUnavailable, "unavailable", "Signing in is not possible right now. Try again shortly.")
			return nil
		}
	}
	// Every token this answer is known to hold or to have replaced: one
	// that is new at a capture or a refresh is not JWT-shaped everywhere.
	known := []string{x.token}
	literals := [][]byte{x.tokenBytes}
	if previous != x.token {
		known, literals = append(known, previous), append(literals, []byte(previous))
	}
	for _, f := range found {
		if looksLikeToken(f.text) && f.text != x.token && f.text != previous {
			known, literals = append(known, f.text), append(literals, []byte(f.text))
		}
	}
	body = applyEdits(body, edits)
	body, n := guardLeaks(body, literals...)
	if n > 0 {
		x.v.leaks.WithLabelValues(rt.label).Add(float64(n))
		x.v.log.LogAttrs(ctx, slog.LevelWarn, "vault: token removed from a response body",
			slog.String("route", rt.label), slog.String("path", x.r.URL.Path), slog.Int("count", n))
	}
	x.guardHeaders(ctx, res.Header, known)
	x.guardHeaders(ctx, res.Trailer, known)
	if cs.n > 0 {
		res.Header.Del("Content-Encoding")
	}
	setBody(res, body)
	return nil
}

// checkRedirect warns when the backend answers a capture request with a
// redirect that keeps it a sign-in (307, 308) to a path no capture names:
// the browser's next request would carry the token past the vault, which
// then removes it from the answer and starts no session. (Captures match
// with or without a trailing slash; other redirects need a capture of
// their own.)
func (x *exchange) checkRedirect(ctx context.Context, res *http.Response) {
	if res.StatusCode != http.StatusTemporaryRedirect && res.StatusCode != http.StatusPermanentRedirect {
		return
	}
	target, err := x.r.URL.Parse(res.Header.Get("Location"))
	if err != nil || target.Host != "" && target.Host != x.r.Host {
		return
	}
	next := &http.Request{Method: x.r.Method, Host: x.r.Host, URL: &url.URL{Path: target.Path}}
	if x.rt.captureOf(next) == nil {
		path := target.Path
		if carriesToken(path, []string{x.token}) {
			path = "[a path that carries a token]"
		}
		x.v.log.LogAttrs(ctx, slog.LevelWarn, "vault: a capture request was redirected to a path no capture names; its token will not be captured (add a capture for it)",
			slog.String("route", x.rt.label), slog.String("capture", x.capture.pattern()), slog.String("redirect", x.r.Method+" "+path))
	}
}

// vaultTokens captures or refreshes the token found at the configured
// paths (a capture's sign-in adds its headers to h, the answer's) and
// returns the edits that take every such token out of the body.
func (x *exchange) vaultTokens(ctx context.Context, h http.Header, body []byte, found []stringValue, capture *Capture) ([]edit, error) {
	rt := x.rt
	var fresh string // the token to vault
	for _, f := range found {
		if capture != nil && rt.paths[f.path].String() == capture.Field.String() && f.text != "" {
			fresh = f.text
			break
		}
	}
	if capture == nil {
		for _, f := range found {
			if f.text != "" && f.text != x.token && looksLikeToken(f.text) {
				fresh = f.text
				break
			}
		}
	}
	placeholder := x.placeholder
	switch {
	case fresh == "":
	case capture != nil:
		user, err := rt.userOf(fresh)
		if err != nil {
			x.v.event(ctx, rt, eventRefused, "vault: captured token refused", slog.String("path", x.r.URL.Path), slog.String("reason", err.Error()))
			fresh = ""
			break // the token is still taken out of the body below
		}
		// The sign-in replaces whatever session the browser had: a second
		// login in the same browser never mixes two accounts. Its
		// authentication time is the capture (never a refresh), so
		// signing in again through the app is the step-up.
		placeholder = newPlaceholder()
		pin := x.epochPin
		if x.pinned == user {
			pin = x.pin
		}
		err = x.v.admission.Admit(ctx, x.r, h, signin.Identity{
			UserID: user, Method: signin.Vault, AuthTime: x.v.admission.Now(), Pin: pin,
			Values: map[string]string{
				keyRoute:       rt.Prefix,
				keyPlaceholder: placeholder,
				keyToken:       x.v.sealer.Seal([]byte(fresh), x.aad(user, placeholder)),
			},
		})
		if errors.Is(err, signin.ErrChangedMeanwhile) {
			x.v.event(ctx, rt, eventRefused, "vault: capture refused: the user's sessions were revoked during the login",
				slog.String("user", user), slog.String("path", x.r.URL.Path))
			return nil, fmt.Errorf("%w: %w", errRevokedDuringLogin, err)
		}
		if err != nil {
			x.v.log.LogAttrs(ctx, slog.LevelError, "vault: start session", slog.String("user", user), slog.String("error", err.Error()))
			return nil, err
		}
		x.setToken([]byte(fresh))
		x.user, x.placeholder = user, placeholder
		// The admission wrote the sign-in's audit line; this counts it.
		x.v.event(ctx, rt, eventCapture, "vault capture", slog.String("user", user), slog.String("session", x.s.Ref()), slog.String("path", x.r.URL.Path))
	default: // a refresh on a call that carried the vaulted token
		user, err := rt.userOf(fresh)
		if err != nil || user != x.user {
			reason := "names another user"
			if err != nil {
				reason = err.Error()
			}
			x.v.event(ctx, rt, eventRefused, "vault: refreshed token refused", slog.String("user", x.user),
				slog.String("path", x.r.URL.Path), slog.String("reason", reason))
			fresh = ""
			break
		}
		x.s.Put(keyToken, x.v.sealer.Seal([]byte(fresh), x.aad(user, x.placeholder)))
		x.setToken([]byte(fresh))
		x.v.event(ctx, rt, eventRefresh, "vault refresh", slog.String("user", user), slog.String("session", x.s.Ref()), slog.String("path", x.r.URL.Path))
	}
	var edits []edit
	for _, f := range found {
		if f.text == "" {
			continue
		}
		switch {
		case rt.DropField && f.memberStart >= 0:
			edits = append(edits, edit{start: f.memberStart, end: f.end, drop: true})
		case placeholder != "" && (f.text == fresh || f.text == x.token):
			edits = append(edits, edit{start: f.start, end: f.end, repl: []byte(strconv.Quote(placeholder))})
		default:
			// A token the vault did not keep (refused, another user's):
			// the leak guard removes it if it is JWT-shaped; anything at
			// a token path goes too.
			edits = append(edits, edit{start: f.start, end: f.end, repl: []byte(strconv.Quote(redacted))})
		}
	}
	return edits, nil
}

// looksLikeToken filters refresh candidates: a configured path may hold
// something else on other answers ("token": "" or a short code).
func looksLikeToken(s string) bool { return len(s) >= 16 && !strings.HasPrefix(s, placeholderPrefix) }

// guardHeaders removes the headers (or trailers) of h that carry one of
// the known tokens or a JWT, as they are or decoded (carriesToken): an
// upstream echoing the token, setting it as a cookie (Express's JSON
// cookies, "j:%7B%22token%22…"), or redirecting with it in Location.
func (x *exchange) guardHeaders(ctx context.Context, h http.Header, known []string) {
	for name, values := range h {
		for _, val := range values {
			if carriesToken(val, known) {
				delete(h, name)
				x.v.leaks.WithLabelValues(x.rt.label).Inc()
				x.v.log.LogAttrs(ctx, slog.LevelWarn, "vault: response header carrying a token removed",
					slog.String("route", x.rt.label), slog.String("path", x.r.URL.Path), slog.String("header", name))
				break
			}
		}
	}
}

func (v *Vault) event(ctx context.Context, rt *route, kind, msg string, attrs ...slog.Attr) {
	v.events.WithLabelValues(rt.label, kind).Inc()
	level := slog.LevelInfo
	if kind == eventRefused || kind == eventRefusedResponse {
		level = slog.LevelWarn
	}
	v.log.LogAttrs(ctx, level, msg, append([]slog.Attr{slog.String("route", rt.label)}, attrs...)...)
}

func containsAny(b []byte, subs [][]byte) bool {
	for _, s := range subs {
		if bytes.Contains(b, s) {
			return true
		}
	}
	return false
}

// mediaType returns the media type of a Content-Type value, without
// parameters, as written (compare it without regard to case).
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct)
}

func setBody(res *http.Response, body []byte) {
	rd := &bodyReader{}
	rd.Reset(body)
	res.Body = rd
	if res.ContentLength != int64(len(body)) {
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	res.TransferEncoding = nil
}

// bodyReader is a checked body handed back to the proxy.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// replaceResponse turns res into a JSON error; the upstream body is never
// sent.
func replaceResponse(res *http.Response, status int, code, message string) {
	res.StatusCode = status
	res.Status = fmt.Sprintf("%d %s", status, http.StatusText(status))
	for name := range res.Header {
		delete(res.Header, name)
	}
	res.Trailer = nil
	httpjson.SetHeaders(res.Header)
	setBody(res, httpjson.ErrorBody(code, message))
}

// acceptsGzip reports whether the client takes gzip, so a non-JSON body
// may reach it compressed.
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") {
				q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}
