package forwardauth

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/amrheader"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// The answer headers a proxy copies onto the request it lets through.
// Every allowing answer carries all of them, empty when unknown, so a proxy
// that copies a header the answer lacks (Caddy leaves its placeholder
// text) never sends an upstream something cloakroom did not say.
const (
	HeaderUser   = "X-Forwarded-User"
	HeaderEmail  = "X-Forwarded-Email"
	HeaderGroups = "X-Forwarded-Groups"
	// HeaderAMR is how the user signed in: the RFC 8176 values the
	// session recorded ("pwd", "otp", "hwk", "swk", "user", "pin", "mfa",
	// or a provider's), comma-separated, as the gateway's own proxy sends
	// it; the internal JWT carries the same list as its amr claim.
	HeaderAMR           = "X-Forwarded-Amr"
	HeaderAuthorization = "Authorization"
	// HeaderCookie carries the request's Cookie header without
	// cloakroom's own cookies (the session and the known-device one),
	// empty when no other cookie is left: the documented configurations
	// send exactly it to the app as its Cookie header, so the app never
	// holds the bearer session cookie.
	HeaderCookie = "X-Cloakroom-Cookie"
	// HeaderLogin carries the sign-in URL on nginx's 401 answer, for
	// the documented error_page to redirect navigations to; it is empty
	// for scripts, which get the 401.
	HeaderLogin = "X-Cloakroom-Login"
)

// Handler answers the decision requests of the proxies in front of the
// apps: GET {auth}/forward/nginx, {auth}/forward/caddy and
// {auth}/forward/traefik, and any method on {auth}/forward/envoy/...
// (Envoy's HTTP ext_authz). Each adapter only reads where its proxy puts
// the original request; one decision judges them all. It never sets a
// cookie. Safe for concurrent use.
type Handler struct {
	cfg       Config
	hosts     map[string][]Rule // by lower-case host, longest prefix first
	decisions sync.Pool         // of *decision, each with its middleware and maps
}

// New validates cfg and builds the handler. Every problem is reported at
// once, wrapped in ErrInvalidConfig.
func New(cfg Config) (*Handler, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, hosts: map[string][]Rule{}}
	h.decisions.New = func() any {
		d := &decision{h: h, header: http.Header{}, dropped: http.Header{}}
		d.middleware = cfg.Sessions.Handler(d)
		return d
	}
	for _, r := range cfg.Rules {
		if r.Prefix == "" {
			r.Prefix = "/"
		}
		host := strings.ToLower(r.Host)
		h.hosts[host] = append(h.hosts[host], r)
	}
	for _, rules := range h.hosts {
		slices.SortFunc(rules, func(a, b Rule) int { return len(b.Prefix) - len(a.Prefix) })
	}
	return h, nil
}

// Prefix is the path under which the handler answers, {auth}/forward/.
func (h *Handler) Prefix() string { return h.cfg.AuthPrefix + "/forward/" }

// noStore is the Cache-Control of every answer, shared: capped, so an
// append never writes into it.
var noStore = []string{"no-store"}[:1:1]

// forwarded is the original request as a proxy describes it.
type forwarded struct {
	method string
	host   string
	uri    string // escaped path and query
	// target is uri parsed, when the adapter already parsed it (nginx's
	// X-Original-URL), so decide does not parse it again.
	target *url.URL
	nginx  bool // nginx answers sign-in with 401 and HeaderLogin
	// absolute is the scheme of an absolute sign-in redirect, "" for a
	// relative one: Traefik resolves a relative Location against the
	// decision's own URL, cloakroom's internal address.
	absolute string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["Cache-Control"] = noStore
	if !h.fromProxy(r) {
		h.refuse(w, r, http.StatusForbidden, "not_a_proxy", "Forward-auth decisions are answered to the configured proxies only.", "")
		return
	}
	adapter := strings.TrimPrefix(r.URL.Path, h.Prefix())
	var f forwarded
	var ok bool
	switch {
	case adapter == "nginx" && r.Method == http.MethodGet:
		f, ok = fromNginx(r)
	case adapter == "caddy" && r.Method == http.MethodGet:
		f, ok = fromXForwarded(r)
	case adapter == "traefik" && r.Method == http.MethodGet:
		f, ok = fromXForwarded(r)
		f.absolute = r.Header.Get("X-Forwarded-Proto") // http or https: fromXForwarded checked it
	case adapter == "envoy" || strings.HasPrefix(adapter, "envoy/"):
		f, ok = fromEnvoy(r, h.Prefix()+"envoy")
	default:
		httpjson.Error(w, http.StatusNotFound, "not_found", "No such forward-auth endpoint.")
		return
	}
	if !ok {
		h.refuse(w, r, http.StatusBadRequest, "bad_forwarded_request", "The proxy did not describe the original request as documented.", "")
		return
	}
	h.decide(w, r, f)
}

// fromProxy reports whether the request comes straight from a configured
// proxy address.
func (h *Handler) fromProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	return slices.ContainsFunc(h.cfg.Proxies, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// fromNginx reads the original request from the headers the documented
// nginx config sets: X-Original-Method and X-Original-URL
// ($scheme://$http_host$request_uri).
func fromNginx(r *http.Request) (forwarded, bool) {
	// Header names in canonical form: Get then looks them up without
	// building the canonical key on every decision.
	raw := r.Header.Get("X-Original-Url")
	if strings.IndexByte(raw, '#') >= 0 {
		// url.Parse would cut it off as a fragment; see decide.
		return forwarded{}, false
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.Opaque != "" {
		return forwarded{}, false
	}
	f := forwarded{method: r.Header.Get("X-Original-Method"), host: u.Host, uri: u.RequestURI(), target: u, nginx: true}
	// What url.ParseRequestURI(f.uri) would give (FuzzNginxTarget checks
	// it): the path and query alone, "/" for none.
	u.Scheme, u.Host = "", ""
	if u.Path == "" {
		u.Path = "/"
	}
	// RawPath as parsing the escaped path sets it: kept only where it
	// differs from the default escaping (url.Parse keeps an invalid one).
	escaped := u.EscapedPath()
	if u.RawPath = ""; u.EscapedPath() != escaped {
		u.RawPath = escaped
	}
	return f, true
}

// fromXForwarded reads the original request as Caddy's forward_auth and
// Traefik's ForwardAuth send it: X-Forwarded-Method, -Proto, -Host, -Uri.
func fromXForwarded(r *http.Request) (forwarded, bool) {
	if p := r.Header.Get("X-Forwarded-Proto"); p != "http" && p != "https" {
		return forwarded{}, false
	}
	return forwarded{method: r.Header.Get("X-Forwarded-Method"), host: r.Header.Get("X-Forwarded-Host"), uri: r.Header.Get("X-Forwarded-Uri")}, true
}

// fromEnvoy reads the original request as Envoy's HTTP ext_authz sends
// it: the original method and Host, and the original path after the
// configured path_prefix.
func fromEnvoy(r *http.Request, prefix string) (forwarded, bool) {
	raw := r.RequestURI
	if raw == "" {
		raw = r.URL.RequestURI()
	}
	uri, ok := strings.CutPrefix(raw, prefix)
	if !ok || !strings.HasPrefix(uri, "/") {
		return forwarded{}, false
	}
	return forwarded{method: r.Method, host: r.Host, uri: uri}, true
}

// forwardedHeaders are the browser's headers the decision reads: the
// session cookie, what the core's cross-origin and CSRF checks read, what
// tells a navigation from a script, and what the core records. The names
// are canonical, as net/http stores them, so the copy indexes the map
// directly instead of canonicalising each name on every decision.
var forwardedHeaders = canonicalNames(
	"Cookie", "Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", cloakroom.CSRFHeader,
	"Accept", "X-Requested-With", "User-Agent", "X-Forwarded-For",
)

func canonicalNames(names ...string) []string {
	for i, n := range names {
		names[i] = http.CanonicalHeaderKey(n)
	}
	return names
}

// decide judges the original request: the core's session middleware runs
// on a request rebuilt from the forwarded data, so timeouts, revocations
// and cross-origin rules are the core's; the rules say what the path needs.
func (h *Handler) decide(w http.ResponseWriter, r *http.Request, f forwarded) {
	if !validMethod(f.method) || checkHost(f.host) != nil {
		h.refuse(w, r, http.StatusBadRequest, "bad_forwarded_request", "The proxy did not describe the original request as documented.", "")
		return
	}
	// A request-target never holds '#' (RFC 9112 3.2), but nginx passes
	// one on: its locations match the part before it, the app gets all
	// of it. Judging either part would be a guess at how the app reads it.
	if strings.IndexByte(f.uri, '#') >= 0 {
		h.refuse(w, r, http.StatusBadRequest, "bad_forwarded_request", "The proxy did not describe the original request as documented.", "")
		return
	}
	u := f.target
	if u == nil {
		var err error
		u, err = url.ParseRequestURI(f.uri)
		if err != nil || u.Host != "" || u.Scheme != "" {
			h.refuse(w, r, http.StatusBadRequest, "bad_forwarded_request", "The proxy did not describe the original request as documented.", "")
			return
		}
	}
	path, ok := decodePath(u.EscapedPath())
	if !ok {
		h.refuse(w, r, http.StatusBadRequest, "bad_path", "The path is not in plain form (no //, . or .. segments, or escaped slashes and dots).", f.host)
		return
	}
	if httpx.PathUnder(path, h.cfg.AuthPrefix) {
		// cloakroom's own pages and endpoints: the proxy sends them to
		// cloakroom, never to an app, so a decision here vouches for
		// nothing (the device-binding endpoints, for one, let a bound
		// session through without its bound cookie).
		h.refuse(w, r, http.StatusForbidden, "auth_path", "Paths under "+h.cfg.AuthPrefix+"/ are cloakroom's own: the proxy sends them to cloakroom, not through a decision.", "")
		return
	}
	rule, known := h.rule(f.host, path)
	if !known {
		h.refuse(w, r, http.StatusForbidden, "unknown_host", "This host is not protected by cloakroom.", f.host)
		return
	}
	d := h.decisions.Get().(*decision)
	d.prepare(w, r, f, u, rule, path)
	// The middleware's own answers (a new or expired cookie, its refusal
	// page) go to d, which drops them: the decision writes only its own
	// headers, to w.
	d.middleware.ServeHTTP(d, &d.original)
	judged := d.judged
	d.reset()
	h.decisions.Put(d)
	if !judged {
		// The core refused the request as cross-site, or as an unsafe
		// request on the session cookie with neither Fetch Metadata nor
		// Origin nor the X-CSRF-Token header.
		h.refuse(w, r, http.StatusForbidden, "cross_site", "Cross-site request refused.", f.host)
	}
}

// judge answers for the session the core loaded onto or.
func (h *Handler) judge(w http.ResponseWriter, r, or *http.Request, f forwarded, rule Rule, path string) {
	s := h.cfg.Sessions.Session(or)
	if s.Err() != nil {
		h.refuse(w, r, http.StatusServiceUnavailable, "unavailable", "The session store is unavailable. Try again shortly.", f.host)
		return
	}
	if !s.LoggedIn() {
		if rule.Public {
			h.allow(w, r, nil, nil)
			return
		}
		h.signIn(w, r, or, f)
		return
	}
	roles := signin.Roles(s)
	for _, need := range rule.Roles {
		if !slices.Contains(roles, need) {
			h.refuse(w, r, http.StatusForbidden, "forbidden", "Your account lacks a role this page needs.", f.host)
			return
		}
	}
	h.allow(w, r, s, roles)
}

// allow answers 200 with the identity headers, every one of them, empty
// when there is no user or no signer; roles and amr are the session's.
func (h *Handler) allow(w http.ResponseWriter, r *http.Request, s *cloakroom.Session, roles []string) {
	var user, email, groups, amr, bearer string
	if s != nil {
		var plainAMR bool
		user, email, groups = s.UserID(), signin.Email(s), strings.Join(roles, ",")
		amr, plainAMR = amrheader.FromStored(s.GetString(signin.ValueAMR))
		if !plainHeaderValue(user) || !plainHeaderValue(email) || !plainGroups(roles) || !plainAMR {
			// Ambiguous in a header: refuse rather than vouch for a
			// value an upstream could read differently.
			h.refuse(w, r, http.StatusForbidden, "bad_identity", "Your identity cannot be passed on unambiguously.", "")
			return
		}
		if h.cfg.Signer != nil {
			// The claim is the gateway proxy's: the session's amr list,
			// read as signin reads it, signed by upstreamjwt.
			id := upstreamjwt.Identity{User: user, Email: email, Groups: roles, AMR: signin.AMR(s)}
			token, err := h.cfg.Signer.SignFor(id, h.cfg.Audience, h.cfg.Now())
			if err != nil {
				h.cfg.Logger.LogAttrs(r.Context(), slog.LevelError, "forward-auth: cannot sign the internal JWT", slog.String("error", err.Error()))
				h.refuse(w, r, http.StatusServiceUnavailable, "unavailable", "The identity could not be signed. Try again shortly.", "")
				return
			}
			bearer = "Bearer " + token
		}
	}
	// One backing array for the six values, each slice capped so an
	// append to one never writes into the next.
	v := [...]string{user, email, groups, amr, bearer, h.appCookies(r)}
	values := v[:]
	hd := w.Header()
	hd[HeaderUser] = values[0:1:1]
	hd[HeaderEmail] = values[1:2:2]
	hd[HeaderGroups] = values[2:3:3]
	hd[HeaderAMR] = values[3:4:4]
	hd[HeaderAuthorization] = values[4:5:5]
	hd[HeaderCookie] = values[5:6:6]
	w.WriteHeader(http.StatusOK)
}

// appCookies returns the Cookie header of the decision request (the
// browser's) without cloakroom's cookies, in one line.
func (h *Handler) appCookies(r *http.Request) string {
	header := http.Header{"Cookie": r.Header.Values("Cookie")}
	httpx.RemoveCookie(header, h.cfg.Sessions.Config().CookieName)
	httpx.RemoveCookie(header, signin.DeviceCookie)
	return strings.Join(header.Values("Cookie"), "; ")
}

// signIn answers a request that needs a session and has none: nginx gets
// 401 and, for a navigation, the sign-in URL in HeaderLogin; other proxies
// pass the answer to the browser as is, so a navigation gets a redirect
// to the sign-in page and a script 401 JSON.
func (h *Handler) signIn(w http.ResponseWriter, r, or *http.Request, f forwarded) {
	// The host was checked against the rules, and the redirect is
	// relative (absolute on that host for Traefik): the browser stays on
	// the host it asked for, whose /auth/ the proxy serves from cloakroom.
	login := h.cfg.AuthPrefix + "/login?return_to=" + url.QueryEscape(httpx.SafeReturnTo(or.URL.RequestURI()))
	nav := httpx.IsNavigation(or)
	switch {
	case f.nginx:
		if nav {
			w.Header().Set(HeaderLogin, login)
		} else {
			w.Header().Set(HeaderLogin, "")
		}
		httpjson.Error(w, http.StatusUnauthorized, "unauthenticated", "Log in first.")
	case nav && f.absolute != "":
		// On the host the browser asked for: one the rules name.
		w.Header().Set("Location", f.absolute+"://"+f.host+login)
		w.WriteHeader(http.StatusFound)
	case nav:
		w.Header().Set("Location", login)
		w.WriteHeader(http.StatusFound)
	default:
		httpjson.Write(w, http.StatusUnauthorized, map[string]string{
			"error": "unauthenticated", "message": "Log in first.", "login_url": login,
		})
	}
}

// refuse answers a refusal as JSON and logs it (host and reason, never a
// cookie, header value or token).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, code, message, host string) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	h.cfg.Logger.LogAttrs(r.Context(), level, "forward-auth refused",
		slog.Int("status", status), slog.String("reason", code), slog.String("host", host), slog.String("peer", r.RemoteAddr))
	httpjson.Error(w, status, code, message)
}

// rule returns the rule for host and path, and false for a host no rule
// names.
func (h *Handler) rule(host, path string) (Rule, bool) {
	host = strings.ToLower(host)
	rules, ok := h.hosts[host]
	if !ok {
		if name, _, err := net.SplitHostPort(host); err == nil {
			rules, ok = h.hosts[name]
		}
	}
	if !ok {
		return Rule{}, false
	}
	for _, r := range rules {
		if httpx.PathUnder(path, r.Prefix) {
			return r, true
		}
	}
	return Rule{Host: host, Prefix: "/"}, true // a configured host's other paths need a session
}

// validMethod reports whether m is an HTTP method token.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for _, c := range []byte(m) {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// decision is one decision in flight: the handler the core's middleware
// calls with the session it loaded, and the writer the middleware answers
// to when its answer is not the decision's (nothing it writes reaches the
// proxy). Decisions are pooled with the middleware around them, the
// original request and both header maps, so a decision allocates none of
// them; reset clears every reference to the request before a decision
// goes back, and nothing the core keeps outlives the middleware's call.
type decision struct {
	h          *Handler
	middleware http.Handler        // the core's session middleware around d
	w          http.ResponseWriter // the proxy's
	r          *http.Request       // the proxy's
	f          forwarded
	rule       Rule
	path       string
	judged     bool
	original   http.Request // rebuilt from the forwarded data, for the core
	header     http.Header  // original's: the forwardedHeaders present
	dropped    http.Header  // the middleware's answer headers
}

// prepare fills d for a decision: the original request as the core is to
// see it. Not inlined: the request's temporary copies stay in this frame,
// off the stack the session lookup below decide grows into (a new
// connection's goroutine starts small, and growing it copies the stack).
//
//go:noinline
func (d *decision) prepare(w http.ResponseWriter, r *http.Request, f forwarded, u *url.URL, rule Rule, path string) {
	d.w, d.r, d.f, d.rule, d.path = w, r, f, rule, path
	for _, name := range forwardedHeaders {
		if v := r.Header[name]; len(v) > 0 {
			d.header[name] = v
		}
	}
	d.original = http.Request{
		Method: f.method, URL: u, RequestURI: f.uri, Host: f.host, Header: d.header,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: r.RemoteAddr, Body: http.NoBody,
	}
	// WithContext's copy stays on the stack: the request lives in d.
	d.original = *d.original.WithContext(r.Context())
}

// reset makes d ready for another decision, holding nothing of this one.
func (d *decision) reset() {
	d.w, d.r, d.f, d.rule, d.path, d.judged = nil, nil, forwarded{}, Rule{}, "", false
	d.original = http.Request{}
	clear(d.header)
	clear(d.dropped)
}

func (d *decision) ServeHTTP(_ http.ResponseWriter, or *http.Request) {
	d.judged = true
	d.h.judge(d.w, d.r, or, d.f, d.rule, d.path)
}

func (d *decision) Header() http.Header       { return d.dropped }
func (*decision) Write(b []byte) (int, error) { return len(b), nil }
func (*decision) WriteHeader(int)             {}
