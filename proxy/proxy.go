package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/amrheader"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// ErrInvalidConfig wraps every problem [New] finds in a Config.
var ErrInvalidConfig = errors.New("proxy: invalid configuration")

// Config configures a [Proxy]. Only Routes is required; every other field
// has a secure default, stated in its comment.
type Config struct {
	// Routes are the allowlisted upstreams. At least one is required; the
	// route with the longest matching prefix wins, and requests that match
	// none get 404 and are never proxied. Prefixes must be unique.
	Routes []Route
	// SessionCookie is the name of the gateway's session cookie, removed
	// from requests (other cookies pass through) and from upstream
	// Set-Cookie headers, so upstreams never see nor set the session token.
	// Required, and it must be the session manager's cookie name (the
	// gateway, which builds its proxy, passes Manager.Config().CookieName):
	// a guess here would let the live token through to every upstream.
	SessionCookie string
	// OtherCookies are further cookies of the gateway's that upstreams
	// must not see nor set, as for SessionCookie (the known-device cookie
	// of the login throttle). Default none.
	OtherCookies []string
	// ReservedHeaders are response headers only the gateway may send,
	// dropped from upstream answers as its cookies are: the device-binding
	// headers (Secure-Session-Registration, Secure-Session-Challenge) when
	// the gateway binds sessions, so an upstream cannot start or steer a
	// device-bound session on the gateway's origin. Default none.
	ReservedHeaders []string
	// Signer, when set, adds "Authorization: Bearer <JWT>" for requests
	// that carry an Identity. Default nil: no token is sent upstream.
	Signer *upstreamjwt.Signer
	// Transport sends the upstream requests. Default [NewTransport], with
	// HTTP/2 attempted only when a route's upstream is https.
	Transport http.RoundTripper
	// ErrorLog receives upstream failures (never tokens or cookies).
	// Default slog.Default().
	ErrorLog *slog.Logger
	// FlushInterval is passed to httputil.ReverseProxy. Default 0: flush
	// when the response is done, except for streaming responses (SSE,
	// unknown length), which are flushed on every write; negative flushes
	// after every write.
	FlushInterval time.Duration
	// Now is the clock used to sign tokens. Default time.Now.
	Now func() time.Time
}

// Proxy forwards requests to the route with the longest matching prefix,
// with the client's identity claims replaced by the gateway's.
type Proxy struct {
	routes []*route // longest prefix first
	// cookies are removed from requests and upstream Set-Cookie.
	cookies []string
	// reserved are response headers dropped from upstream answers.
	reserved []string
	signer   *upstreamjwt.Signer
	log      *slog.Logger
	now      func() time.Time
}

type route struct {
	Route
	rp *httputil.ReverseProxy
}

// Call is what the caller of [Proxy.Serve] says about one request. The
// zero Call proxies an anonymous request.
type Call struct {
	// Identity is the user the request is proxied for; one with an empty
	// User counts as anonymous. Its headers (and the internal JWT, with a
	// signer) are sent upstream.
	Identity Identity
	// AccessToken, when set with a User, is sent as "Authorization:
	// Bearer" instead of the internal JWT (token relay).
	AccessToken string
	// Lifetime, when set, holds the request body and every long-lived
	// response under it; see [Lifetime].
	Lifetime Lifetime
	// Exchange, when set, adjusts the outbound request and inspects the
	// answer; see [Exchange].
	Exchange Exchange
}

// callState is one proxied request as Rewrite, ModifyResponse and the
// error handler see it: the Call, the bearer token, and the hold, in one
// allocation carried by one context value.
type callState struct {
	call  Call
	token string // bearer token to send; "" for none
	held  bool   // hold is in use (the Call has a Lifetime)
	hold  hold
	// informational filters the 1xx answers when the Exchange asks to
	// (InformationalFilter); here so that it costs no allocation.
	informational informationalWriter
}

// callKey carries the *callState of a request from Serve to the reverse
// proxy's hooks.
type callKey struct{}

func callOf(ctx context.Context) *callState {
	st, _ := ctx.Value(callKey{}).(*callState)
	return st
}

// NewTransport returns the default upstream transport: a clone of
// http.DefaultTransport tuned for a gateway that keeps many connections to
// few hosts. It does not use HTTP_PROXY (upstreams are reached directly),
// does not attempt HTTP/2 and does not ask for compression, so bodies pass
// through unchanged.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 256
	t.IdleConnTimeout = 90 * time.Second
	t.ForceAttemptHTTP2 = false
	t.DisableCompression = true
	return t
}

// New checks cfg and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	if len(cfg.Routes) == 0 {
		return nil, fmt.Errorf("%w: at least one route is required", ErrInvalidConfig)
	}
	if cfg.SessionCookie == "" {
		return nil, fmt.Errorf("%w: SessionCookie is required: the session manager's cookie name", ErrInvalidConfig)
	}
	for _, name := range append([]string{cfg.SessionCookie}, cfg.OtherCookies...) {
		if !cloakroom.ValidCookieName(name) {
			return nil, fmt.Errorf("%w: %q is not a valid cookie name", ErrInvalidConfig, name)
		}
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Proxy{signer: cfg.Signer, log: cfg.ErrorLog, now: cfg.Now}
	p.cookies = append([]string{cfg.SessionCookie}, cfg.OtherCookies...)
	for _, h := range cfg.ReservedHeaders {
		p.reserved = append(p.reserved, http.CanonicalHeaderKey(h))
	}

	seen := make(map[string]bool, len(cfg.Routes))
	anyHTTPS := false
	for _, r := range cfg.Routes {
		prefix, err := normalisePrefix(r.Prefix)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if err := CheckUpstream(r.Upstream); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if seen[prefix] {
			return nil, fmt.Errorf("%w: prefix %q is routed twice", ErrInvalidConfig, prefix)
		}
		seen[prefix] = true
		anyHTTPS = anyHTTPS || r.Upstream.Scheme == "https"
		upstream := *r.Upstream // private copy: later changes by the caller do not reroute
		audience := r.Audience
		if audience == "" {
			audience = prefix
		}
		p.routes = append(p.routes, &route{Route: Route{Prefix: prefix, Upstream: &upstream, Audience: audience, Mode: r.Mode}})
	}
	sort.Slice(p.routes, func(i, j int) bool { return len(p.routes[i].Prefix) > len(p.routes[j].Prefix) })

	transport := cfg.Transport
	if transport == nil {
		t := NewTransport()
		t.ForceAttemptHTTP2 = anyHTTPS
		transport = t
	}
	stdLog := slog.NewLogLogger(cfg.ErrorLog.Handler(), slog.LevelWarn)
	for _, rt := range p.routes {
		rt.rp = &httputil.ReverseProxy{
			Rewrite:        p.rewriter(rt.Upstream),
			Transport:      transport,
			FlushInterval:  cfg.FlushInterval,
			ErrorLog:       stdLog,
			BufferPool:     bufferPool{},
			ModifyResponse: p.modifyResponse,
			ErrorHandler:   p.errorHandler(rt.Route),
		}
	}
	return p, nil
}

// Match returns the route for a path, which must be clean: the one with
// the longest prefix that the path starts with (or equals, without the
// trailing slash).
func (p *Proxy) Match(path string) (Route, bool) {
	if rt := p.match(path); rt != nil {
		upstream := *rt.Upstream // the caller cannot reroute through the pointer
		return Route{Prefix: rt.Prefix, Upstream: &upstream, Audience: rt.Audience, Mode: rt.Mode}, true
	}
	return Route{}, false
}

func (p *Proxy) match(path string) *route {
	for _, rt := range p.routes {
		if httpx.PathUnder(path, rt.Prefix) {
			return rt
		}
	}
	return nil
}

// Serve refuses unsafe paths (400) and unrouted paths (404), and proxies
// everything else to its route's upstream, for what c says, after the
// route's Mode (if any) has prepared it.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, c Call) {
	if !safePath(r.URL.Path, r.URL.RawPath) {
		http.Error(w, "bad request: invalid path", http.StatusBadRequest)
		return
	}
	rt := p.match(r.URL.Path)
	if rt == nil {
		http.NotFound(w, r)
		return
	}
	if rt.Mode != nil {
		var ok bool
		if c, ok = rt.Mode.Prepare(w, r, c); !ok {
			return
		}
	}
	st := &callState{call: c}
	if c.Identity.User != "" {
		if err := checkIdentity(c.Identity); err != nil {
			p.log.LogAttrs(r.Context(), slog.LevelError, "proxy: identity cannot be forwarded",
				slog.String("route", rt.Prefix), slog.String("error", err.Error()))
			http.Error(w, "internal server error", http.StatusInternalServerError)
			return
		}
		if c.AccessToken != "" {
			st.token = c.AccessToken
		} else if p.signer != nil {
			token, err := p.signer.SignFor(c.Identity, rt.Audience, p.now())
			if err != nil {
				p.log.LogAttrs(r.Context(), slog.LevelError, "proxy: signing upstream token",
					slog.String("route", rt.Prefix), slog.String("error", err.Error()))
				http.Error(w, "internal server error", http.StatusInternalServerError)
				return
			}
			st.token = token
		}
	}
	ctx := r.Context()
	if c.Lifetime != nil {
		// The upstream request runs under a context of its own, cancelled
		// when the lifetime ends (see hold).
		ctx, st.hold.cancel = context.WithCancel(ctx)
		st.hold.lifetime, st.held = c.Lifetime, true
		defer st.hold.done()
	}
	r = r.WithContext(context.WithValue(ctx, callKey{}, st))
	if st.held && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		st.hold.start(r.Context()) // the upload itself can take long
	}
	if f, ok := c.Exchange.(InformationalFilter); ok {
		st.informational = informationalWriter{ResponseWriter: w, filter: f}
		w = &st.informational
	}
	rt.rp.ServeHTTP(w, r)
}

// rewriter builds the outbound request: client-sent identity and
// forwarding headers out, the real ones in.
func (p *Proxy) rewriter(upstream *url.URL) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		h := pr.Out.Header
		StripIdentityHeaders(h)
		pr.SetURL(upstream)
		pr.SetXForwarded()
		for _, c := range p.cookies {
			httpx.RemoveCookie(h, c)
		}
		st := callOf(pr.In.Context())
		if st == nil {
			return // not from Serve: no identity, nothing to attach
		}
		if id := st.call.Identity; id.User != "" {
			h["X-Forwarded-User"] = []string{id.User}
			if id.Email != "" {
				h["X-Forwarded-Email"] = []string{id.Email}
			}
			if len(id.Groups) > 0 {
				h["X-Forwarded-Groups"] = []string{strings.Join(id.Groups, ",")}
			}
			if amr, ok := amrheader.Join(id.AMR); ok && amr != "" {
				// How the user signed in (RFC 8176), so an upstream can
				// ask for a second factor itself; checkIdentity refused
				// a list that would not read back as itself.
				h["X-Forwarded-Amr"] = []string{amr}
			}
		}
		if st.token != "" {
			h["Authorization"] = []string{"Bearer " + st.token}
		}
		if x := st.call.Exchange; x != nil {
			x.Rewrite(pr.Out)
		}
	}
}

// modifyResponse holds long-lived responses under the request's Lifetime,
// applies the proxy's response rules, then the request's Exchange, if any.
func (p *Proxy) modifyResponse(res *http.Response) error {
	st := callOf(res.Request.Context())
	if st == nil {
		p.dropSessionCookie(res)
		p.dropReserved(res)
		return nil
	}
	st.holdResponse(res)
	p.dropSessionCookie(res)
	// Before the Exchange: a mode may add a reserved header of the
	// gateway's own (a vault capture offering device binding).
	p.dropReserved(res)
	if x := st.call.Exchange; x != nil {
		return x.ModifyResponse(res)
	}
	return nil
}

// dropSessionCookie stops upstreams from setting, replacing or clearing the
// gateway's session cookie.
func (p *Proxy) dropSessionCookie(res *http.Response) {
	values := res.Header["Set-Cookie"]
	if len(values) == 0 {
		return
	}
	cookies := p.cookies
	kept := values[:0:0]
	for _, v := range values {
		name, _, _ := strings.Cut(v, "=")
		protected := slices.ContainsFunc(cookies, func(c string) bool { return strings.EqualFold(strings.TrimSpace(name), c) })
		if !protected {
			kept = append(kept, v)
		}
	}
	if len(kept) == len(values) {
		return
	}
	p.log.LogAttrs(res.Request.Context(), slog.LevelWarn, "proxy: dropped upstream Set-Cookie for the session cookie",
		slog.String("upstream", res.Request.URL.Host))
	if len(kept) == 0 {
		res.Header.Del("Set-Cookie")
	} else {
		res.Header["Set-Cookie"] = kept
	}
}

// dropReserved removes the headers only the gateway may send from an
// upstream's answer.
func (p *Proxy) dropReserved(res *http.Response) {
	for _, name := range p.reserved {
		if _, ok := res.Header[name]; ok {
			delete(res.Header, name)
			p.log.LogAttrs(res.Request.Context(), slog.LevelWarn, "proxy: dropped an upstream header only the gateway may send",
				slog.String("header", name), slog.String("upstream", res.Request.URL.Host))
		}
	}
}

// errorHandler answers 502 and logs the failure without the URL's query,
// headers, cookies or tokens.
func (p *Proxy) errorHandler(rt Route) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if st := callOf(r.Context()); st != nil && st.lifetimeEnded() {
			// The session ended while the request was on its way.
			http.Error(w, "unauthorized: the session ended", http.StatusUnauthorized)
			return
		}
		if r.Context().Err() != nil {
			// The request ended on the client's side: the server's read
			// deadline cut a slow body, or the client went away (then
			// nobody reads this). Not the upstream's fault, nor a
			// session end.
			p.log.LogAttrs(r.Context(), slog.LevelDebug, "proxy: request ended before the upstream answered",
				slog.String("route", rt.Prefix), slog.String("method", r.Method), slog.String("error", err.Error()))
			w.Header().Set("Connection", "close")
			http.Error(w, "request timeout: the request was not received in time", http.StatusRequestTimeout)
			return
		}
		p.log.LogAttrs(r.Context(), slog.LevelError, "proxy: upstream request failed",
			slog.String("route", rt.Prefix),
			slog.String("upstream", rt.Upstream.Host),
			slog.String("method", r.Method),
			slog.String("error", err.Error()))
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}
}

// Client-sent headers that claim an identity, carry a credential or
// describe the connection. The gateway is the edge: nothing the client says
// about either is passed on. Names are compared case-insensitively with "_"
// equal to "-", because CGI-style upstreams map X_Forwarded_User and
// X-Forwarded-User to the same variable.
var (
	untrustedPrefixes = []string{"x-forwarded-", "x-auth-request-", "x-remote-"}
	untrustedNames    = []string{
		"authorization", "proxy-authorization", "forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
		"cf-connecting-ip", "fastly-client-ip", "x-cluster-client-ip",
		"remote-user", "x-user", "x-email", "x-original-url", "x-original-uri", "x-rewrite-url",
		"x-csrf-token",
	}
)

// StripIdentityHeaders removes from h every client-sent header that claims
// an identity, carries a credential or describes the connection
// (X-Forwarded-*, X-Auth-Request-*, X-Remote-*, Authorization, Forwarded,
// X-Real-Ip, True-Client-Ip, X-Original-Url, ...), comparing names without
// case and with "_" as "-". Both the API proxy and the gateway's frontend
// proxy use it.
func StripIdentityHeaders(h http.Header) {
	for name := range h {
		if untrustedHeader(name) {
			delete(h, name)
		}
	}
}

func untrustedHeader(name string) bool {
	for _, p := range untrustedPrefixes {
		if len(name) >= len(p) && headerNameEqual(name[:len(p)], p) {
			return true
		}
	}
	for _, n := range untrustedNames {
		if headerNameEqual(name, n) {
			return true
		}
	}
	return false
}

// headerNameEqual compares a header name with a lower-case name, ignoring
// case and treating "_" as "-".
func headerNameEqual(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// checkIdentity refuses values that would be ambiguous or invalid in a
// header: control characters, surrounding whitespace (trimmed by header
// parsers, so "alice " would become "alice"), commas or empty names in
// groups (the comma-joined list would split differently), and amr values
// X-Forwarded-Amr would not carry as themselves (amrheader's rule, which
// forward auth applies too).
func checkIdentity(id Identity) error {
	if _, ok := amrheader.Join(id.AMR); !ok {
		return fmt.Errorf("%w: an amr value is empty, contains a comma or is not printable ASCII", upstreamjwt.ErrInvalidIdentity)
	}
	if !plainHeaderValue(id.User) {
		return fmt.Errorf("%w: user is not a plain header value", upstreamjwt.ErrInvalidIdentity)
	}
	if id.Email != "" && !plainHeaderValue(id.Email) {
		return fmt.Errorf("%w: email is not a plain header value", upstreamjwt.ErrInvalidIdentity)
	}
	for i, g := range id.Groups {
		if g == "" || strings.IndexByte(g, ',') >= 0 || !plainHeaderValue(g) {
			return fmt.Errorf("%w: group %d is empty, contains a comma or is not a plain header value", upstreamjwt.ErrInvalidIdentity, i)
		}
	}
	return nil
}

func plainHeaderValue(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// bufferPool recycles the 32 KiB copy buffers of httputil.ReverseProxy.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
