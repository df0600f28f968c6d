package gateway

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/cloakroom/cloakroom/internal/httpjson"
)

// isUpgrade reports whether r asks to switch protocols (a WebSocket
// handshake) or to tunnel (CONNECT, HTTP/2 extended CONNECT).
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || r.Method == http.MethodConnect
}

// upgradeFromOwnOrigin reports whether a protocol switch comes from one of
// our own pages. A WebSocket handshake is a GET, so CrossOriginProtection
// never looks at it, and a page on another site (or a sibling subdomain,
// which carries the Lax cookie) could otherwise open a socket that acts
// as the user (cross-site WebSocket hijacking, ASVS 5.0 V4 WebSocket).
// It accepts Sec-Fetch-Site: same-origin, or else an Origin equal to the
// request's own origin or to a trusted origin; nothing else.
func (a *app) upgradeFromOwnOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && a.sessions.TrustedOrigin(origin) {
		return true
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
		// An older browser: the Origin header decides.
	default: // same-site, cross-site, none
		return false
	}
	if origin == "https://"+r.Host {
		return true
	}
	// A plain-HTTP listener (the demo, or behind a proxy that talks HTTP
	// to us) also serves http:// pages.
	return !a.tls && r.TLS == nil && origin == "http://"+r.Host
}

// refuseUpgrade answers a cross-origin protocol switch, before any
// upstream is contacted.
func (a *app) refuseUpgrade(w http.ResponseWriter, r *http.Request) {
	s := a.sessions.Session(r)
	a.log.WarnContext(r.Context(), "cross-origin upgrade refused", "path", r.URL.Path,
		"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"),
		"client_ip", s.ClientIP(), "session", s.Ref())
	httpjson.Error(w, http.StatusForbidden, "csrf", "A WebSocket carrying the session must be opened by this site's own pages.")
}

// guardHijack wraps the writer of protocol-switch requests, below the
// session middleware, so that once the proxy has taken the connection over
// nothing more is written to it by the handlers between them. (The session
// middleware itself saves before the hijack and writes nothing after it.)
func guardHijack(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&hijackGuard{ResponseWriter: w}, r)
	})
}

type hijackGuard struct {
	http.ResponseWriter
	hijacked atomic.Bool
}

func (h *hijackGuard) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err == nil {
		h.hijacked.Store(true)
	}
	return conn, rw, err
}

func (h *hijackGuard) WriteHeader(code int) {
	if !h.hijacked.Load() {
		h.ResponseWriter.WriteHeader(code)
	}
}

func (h *hijackGuard) Write(b []byte) (int, error) {
	if h.hijacked.Load() {
		return 0, http.ErrHijacked
	}
	return h.ResponseWriter.Write(b)
}

func (h *hijackGuard) Flush() {
	if !h.hijacked.Load() {
		_ = http.NewResponseController(h.ResponseWriter).Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (h *hijackGuard) Unwrap() http.ResponseWriter { return h.ResponseWriter }
