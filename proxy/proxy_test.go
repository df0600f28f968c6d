package proxy_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// TestPathTraversalRefused sends hostile request lines with a raw TCP client
// (Go's client would clean them) and checks that none reaches the upstream.
func TestPathTraversalRefused(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}})
	gw := startGateway(t, p, nil)
	addr := gw.Listener.Addr().String()

	send := func(target string) (int, string) {
		return rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n")
	}
	// The harness itself works: a clean path is proxied.
	if status, body := send("/api/ok"); status != http.StatusOK || !strings.Contains(body, `"Path":"/api/ok"`) {
		t.Fatalf("control request: %d %s", status, body)
	}
	api.hits.Store(0)

	hostile := []string{
		"/api/../admin/secret",
		"/api/%2e%2e/admin/secret",
		"/api/%2E%2E/admin/secret",
		"/api/.%2e/admin/secret",
		"/api/%2e./admin/secret",
		"/api/x/../../admin/secret",
		"/api/./../admin/secret",
		"/api/..",
		"/api/.",
		"/api/..%2fadmin/secret",
		"/api/..%2Fadmin/secret",
		"/api/%2e%2e%2fadmin/secret",
		"/api/x%2f..%2f..%2fadmin",
		"/api/..%5cadmin/secret",
		"/api/%5c..%5cadmin/secret",
		`/api/..\admin/secret`,
		"/api/..;/admin/secret",
		"/api/%2e%2e;/admin/secret",
		"/api/..%3b/admin/secret",
		"/api/%252e%252e/admin/secret",
		"/api/%252e%252e%252fadmin",
		"/api/%25%32%65%25%32%65/admin",
		"/api/%c0%ae%c0%ae/admin/secret",
		"/api/%ef%bc%8e%ef%bc%8e/admin/secret",
		"/api/%00/../admin",
		"/api/%00",
		"/api/x%0d%0aX-Injected:%20yes",
		"/api//admin",
		"/api//../admin",
		"//api/x",
		"/api/x/",
		"http://gateway.test/api/../admin/secret",
		"api/x",
		"*",
	}
	for _, target := range hostile {
		status, body := send(target)
		if target == "/api/x/" { // a trailing slash alone is clean
			if status != http.StatusOK {
				t.Errorf("GET %s = %d, want 200", target, status)
			}
			continue
		}
		// "api/x" is refused by net/http itself; everything else by Proxy.
		if status != http.StatusBadRequest || !strings.Contains(body, "invalid path") && target != "api/x" {
			t.Errorf("GET %s = %d %q, want 400 invalid path", target, status, body)
		}
	}
	if n := api.hits.Load(); n != 1 {
		t.Errorf("upstream received %d requests, want only the trailing-slash one", n)
	}
}

func TestClientIdentityHeadersReplaced(t *testing.T) {
	api := newUpstream(t, "api")
	clock := newClock()
	signer := newSigner(t, upstreamjwt.SignerConfig{})
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}, Signer: signer, Now: clock.Now})
	id := proxy.Identity{User: "alice", Email: "alice@example.test", Groups: []string{"admins", "dev"}}
	gw := startGateway(t, p, withIdentity(id))

	spoofed := http.Header{
		"X-Forwarded-User":               {"mallory"},
		"X-Forwarded-Email":              {"mallory@evil.test"},
		"X-Forwarded-Groups":             {"root"},
		"X-Forwarded-Preferred-Username": {"mallory"},
		"X-Forwarded-Access-Token":       {"stolen"},
		"X-Auth-Request-User":            {"mallory"},
		"X-Auth-Request-Access-Token":    {"stolen"},
		"X_Forwarded_User":               {"mallory"},
		"x_auth_request_email":           {"mallory@evil.test"},
		"Authorization":                  {"Bearer forged"},
		"X-Forwarded-For":                {"6.6.6.6"},
		"X-Forwarded-Host":               {"evil.test"},
		"X-Forwarded-Proto":              {"https"},
		"X-Forwarded-Port":               {"443"},
		"Forwarded":                      {"for=6.6.6.6;proto=https"},
		"X-Real-Ip":                      {"6.6.6.6"},
		"X-Original-Url":                 {"/admin"},
		"Remote-User":                    {"mallory"},
		"X-Request-Id":                   {"kept-1"},
	}
	status, e, _ := get(t, gw.URL+"/api/me", spoofed)
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	for name := range e.Header {
		lower := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(lower, "x-auth-request-") || lower == "forwarded" || lower == "x-real-ip" ||
			lower == "x-original-url" || lower == "remote-user" || lower == "x-forwarded-port" ||
			lower == "x-forwarded-access-token" || lower == "x-forwarded-preferred-username" {
			t.Errorf("client-sent %s reached the upstream: %q", name, e.Header[name])
		}
		if strings.Contains(name, "_") {
			t.Errorf("underscore header %s reached the upstream", name)
		}
	}
	want := map[string]string{
		"X-Forwarded-User":   "alice",
		"X-Forwarded-Email":  "alice@example.test",
		"X-Forwarded-Groups": "admins,dev",
		"X-Forwarded-For":    "127.0.0.1",
		"X-Forwarded-Host":   strings.TrimPrefix(gw.URL, "http://"),
		"X-Forwarded-Proto":  "http",
		"X-Request-Id":       "kept-1",
	}
	for name, v := range want {
		if got := e.Header[name]; len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want exactly %q", name, got, v)
		}
	}
	if e.Host != api.url(t).Host {
		t.Errorf("upstream Host = %q, want its own %q", e.Host, api.url(t).Host)
	}
	auth := e.Header["Authorization"]
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		t.Fatalf("Authorization = %q", auth)
	}
	claims, err := upstreamjwt.Verify(strings.TrimPrefix(auth[0], "Bearer "), signer.JWKS(), "/api/", clock.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if claims.Subject != "alice" || claims.Email != id.Email || strings.Join(claims.Groups, ",") != "admins,dev" {
		t.Errorf("claims = %+v", claims)
	}
}

func TestAnonymousRequestCarriesNoIdentity(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}, Signer: newSigner(t, upstreamjwt.SignerConfig{})})
	for name, mw := range map[string]func(http.Handler) http.Handler{
		"no identity": nil,
		"empty user":  withIdentity(proxy.Identity{Email: "x@example.test", Groups: []string{"g"}}),
	} {
		gw := startGateway(t, p, mw)
		_, e, _ := get(t, gw.URL+"/api/x", http.Header{
			"X-Forwarded-User": {"mallory"}, "Authorization": {"Basic bWFsbG9yeTp4"},
		})
		for _, h := range []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "Authorization"} {
			if v, ok := e.Header[h]; ok {
				t.Errorf("%s: upstream got %s: %q", name, h, v)
			}
		}
	}
}

func TestIdentityWithoutSigner(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}})
	gw := startGateway(t, p, withIdentity(proxy.Identity{User: "bob"}))
	_, e, _ := get(t, gw.URL+"/api/x", http.Header{"Authorization": {"Bearer forged"}, "X-Forwarded-Email": {"x@evil.test"}})
	if got := e.Header.Get("X-Forwarded-User"); got != "bob" {
		t.Errorf("X-Forwarded-User = %q", got)
	}
	for _, h := range []string{"Authorization", "X-Forwarded-Email", "X-Forwarded-Groups"} {
		if v, ok := e.Header[h]; ok {
			t.Errorf("upstream got %s: %q", h, v)
		}
	}
}

func TestUnforwardableIdentityRefused(t *testing.T) {
	api := newUpstream(t, "api")
	var logs syncBuffer
	p := newProxy(t, proxy.Config{
		Routes:   []proxy.Route{api.route(t, "/api/")},
		ErrorLog: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	bad := []proxy.Identity{
		{User: "alice", Groups: []string{"users,admins"}},
		{User: "alice", Groups: []string{""}},
		{User: "alice\r\nX-Forwarded-Groups: admins"},
		{User: "alice "},
		{User: "alice", Email: "a@example.test\x00"},
	}
	for _, id := range bad {
		gw := startGateway(t, p, withIdentity(id))
		if status, _, _ := get(t, gw.URL+"/api/x", nil); status != http.StatusInternalServerError {
			t.Errorf("identity %q: status %d, want 500", id, status)
		}
	}
	if n := api.hits.Load(); n != 0 {
		t.Errorf("upstream received %d requests", n)
	}
	if !strings.Contains(logs.String(), "identity cannot be forwarded") || strings.Contains(logs.String(), "X-Forwarded-Groups: admins") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestUnforwardableAMRRefused: an amr value that would not read back
// as itself in X-Forwarded-Amr (a provider's "pwd,otp" reads as a second
// factor; a non-ASCII, spaced or empty value a parser may split, trim or
// refuse) refuses the request, as forward auth does, and no header
// reaches the upstream; plain values are joined with commas.
func TestUnforwardableAMRRefused(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}})
	for _, amr := range [][]string{{"pwd,otp"}, {"pwd", "otp\u00e9"}, {"pwd", ""}, {"pwd otp"}, {"pwd\t"}, {"hwk\u00a0mfa"}} {
		gw := startGateway(t, p, withIdentity(proxy.Identity{User: "alice", AMR: amr}))
		if status, _, _ := get(t, gw.URL+"/api/x", nil); status != http.StatusInternalServerError {
			t.Errorf("amr %q: status %d, want 500", amr, status)
		}
	}
	if n := api.hits.Load(); n != 0 {
		t.Errorf("upstream received %d requests", n)
	}
	gw := startGateway(t, p, withIdentity(proxy.Identity{User: "alice", AMR: []string{"pwd", "otp"}}))
	if _, e, _ := get(t, gw.URL+"/api/x", nil); e.Header.Get("X-Forwarded-Amr") != "pwd,otp" {
		t.Errorf("X-Forwarded-Amr = %q, want pwd,otp", e.Header.Get("X-Forwarded-Amr"))
	}
}

func TestSessionCookieRemoved(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}})
	gw := startGateway(t, p, nil)
	addr := gw.Listener.Addr().String()

	cases := []struct {
		name    string
		cookies []string // Cookie header lines as sent
		want    []string // Cookie header values the upstream sees; nil for none
	}{
		{"mixed", []string{"theme=dark; __Host-Http-session=SECRETTOKEN; lang=en"}, []string{"theme=dark; lang=en"}},
		{"only session", []string{"__Host-Http-session=SECRETTOKEN"}, nil},
		{"first", []string{"__Host-Http-session=SECRETTOKEN;a=1"}, []string{"a=1"}},
		{"twice", []string{"__Host-Http-session=SECRETTOKEN; __Host-Http-session=OTHER; a=1"}, []string{"a=1"}},
		{"two headers", []string{"a=1", "__Host-Http-session=SECRETTOKEN; b=2"}, []string{"a=1; b=2"}},
		{"untouched", []string{"a=1;b=2;  c=3"}, []string{"a=1;b=2;  c=3"}},
		{"lookalikes kept", []string{"x__Host-Http-session=1; __Host-Http-session2=2; __Host-Http-session=SECRETTOKEN"}, []string{"x__Host-Http-session=1; __Host-Http-session2=2"}},
	}
	for _, tc := range cases {
		head := "GET /api/c HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n"
		for _, c := range tc.cookies {
			head += "Cookie: " + c + "\r\n"
		}
		status, body := rawRequest(t, addr, head+"\r\n")
		if status != http.StatusOK {
			t.Fatalf("%s: status %d", tc.name, status)
		}
		if strings.Contains(body, "SECRETTOKEN") || strings.Contains(body, "OTHER") {
			t.Errorf("%s: session token reached the upstream: %s", tc.name, body)
		}
		e := decodeEcho(t, body)
		if got := e.Header["Cookie"]; strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: upstream Cookie = %q, want %q", tc.name, got, tc.want)
		}
	}

	// A custom cookie name is honoured, and the default one then passes.
	p2 := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}, SessionCookie: "sid"})
	gw2 := startGateway(t, p2, nil)
	_, e, _ := get(t, gw2.URL+"/api/c", http.Header{"Cookie": {"sid=SECRET; __Host-Http-session=x"}})
	if got := e.Header.Get("Cookie"); got != "__Host-Http-session=x" {
		t.Errorf("custom name: upstream Cookie = %q", got)
	}
}

func TestUpstreamCannotSetSessionCookie(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{
		Routes:   []proxy.Route{api.route(t, "/api/")},
		ErrorLog: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	gw := startGateway(t, p, nil)
	q := url.Values{"set-cookie": {
		"__Host-Http-session=FIXATED; Path=/; Secure; HttpOnly",
		"__host-http-session=; Max-Age=0",
		"theme=dark; Path=/",
	}}
	_, _, h := get(t, gw.URL+"/api/c?"+q.Encode(), nil)
	if got := h["Set-Cookie"]; len(got) != 1 || got[0] != "theme=dark; Path=/" {
		t.Errorf("Set-Cookie to client = %q, want only the theme cookie", got)
	}
}

func TestBadGatewayOnDeadUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more: connection refused

	route, err := proxy.ParseRoute("/api/=" + deadURL)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	signer := newSigner(t, upstreamjwt.SignerConfig{})
	p := newProxy(t, proxy.Config{
		Routes:   []proxy.Route{route},
		Signer:   signer,
		ErrorLog: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	gw := startGateway(t, p, withIdentity(proxy.Identity{User: "alice"}))

	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api/x?token=QUERYSECRET", nil)
	req.Header.Set("Cookie", "__Host-Http-session=SESSIONSECRET")
	req.Header.Set("Authorization", "Bearer CLIENTSECRET")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || strings.TrimSpace(string(body)) != "bad gateway" {
		t.Errorf("got %d %q, want 502 bad gateway", res.StatusCode, body)
	}
	log := logs.String()
	if !strings.Contains(log, "upstream request failed") || !strings.Contains(log, "route=/api/") {
		t.Errorf("failure not logged: %s", log)
	}
	for _, secret := range []string{"SECRET", "eyJ", "Bearer"} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains %q: %s", secret, log)
		}
	}
}

func TestTransportDefaults(t *testing.T) {
	tr := proxy.NewTransport()
	if tr.MaxIdleConns != 1024 || tr.MaxIdleConnsPerHost != 256 || tr.IdleConnTimeout != 90*time.Second ||
		tr.ForceAttemptHTTP2 || tr.Proxy != nil || !tr.DisableCompression {
		t.Errorf("transport = %+v", tr)
	}
}

func decodeEcho(t *testing.T, body string) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return e
}

// syncBuffer collects output from concurrent goroutines.
type syncBuffer = syncbuf.Buffer

// TestConnectionHeaderCannotDropIdentity: naming a header in Connection
// makes it hop-by-hop; the gateway's own identity headers must survive.
func TestConnectionHeaderCannotDropIdentity(t *testing.T) {
	api := newUpstream(t, "api")
	signer := newSigner(t, upstreamjwt.SignerConfig{})
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{api.route(t, "/api/")}, Signer: signer})
	gw := startGateway(t, p, withIdentity(proxy.Identity{User: "alice", Groups: []string{"dev"}}))
	status, body := rawRequest(t, gw.Listener.Addr().String(), "GET /api/x HTTP/1.1\r\nHost: gw\r\n"+
		"Connection: close, X-Forwarded-User, X-Forwarded-Groups, Authorization, X-Forwarded-For\r\n"+
		"X-Forwarded-User: mallory\r\n\r\n")
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	e := decodeEcho(t, body)
	if e.Header.Get("X-Forwarded-User") != "alice" || e.Header.Get("X-Forwarded-Groups") != "dev" ||
		e.Header.Get("X-Forwarded-For") != "127.0.0.1" || !strings.HasPrefix(e.Header.Get("Authorization"), "Bearer ") {
		t.Errorf("upstream headers %v", e.Header)
	}
}

// TestOtherCookiesProtected: the gateway's other cookies (the known-device
// one) are kept from upstreams like the session cookie, in requests and in
// Set-Cookie.
func TestOtherCookiesProtected(t *testing.T) {
	api := newUpstream(t, "api")
	p := newProxy(t, proxy.Config{
		Routes:       []proxy.Route{api.route(t, "/api/")},
		OtherCookies: []string{"device"},
		ErrorLog:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	gw := startGateway(t, p, nil)
	q := url.Values{"set-cookie": {"device=FIXATED; Path=/", "theme=dark; Path=/"}}
	_, e, h := get(t, gw.URL+"/api/c?"+q.Encode(), http.Header{"Cookie": {"device=D; " + sessionCookieName + "=SECRET; a=1"}})
	if got := e.Header.Get("Cookie"); got != "a=1" {
		t.Errorf("upstream Cookie = %q, want a=1", got)
	}
	if got := h["Set-Cookie"]; len(got) != 1 || got[0] != "theme=dark; Path=/" {
		t.Errorf("Set-Cookie to client = %q, want only the theme cookie", got)
	}
}

// An upstream cannot send the headers the gateway reserves (device-binding
// offers and challenges): they are dropped from its answers, other
// headers pass.
func TestUpstreamCannotSendReservedHeaders(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Secure-Session-Registration", `(ES256);path="/api/evil";challenge="c"`)
		w.Header().Set("secure-session-challenge", `"c";id="x"`)
		w.Header().Set("X-Kept", "yes")
		w.Write([]byte("{}"))
	}))
	t.Cleanup(upstream.Close)
	route, err := proxy.ParseRoute("/api/=" + upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, proxy.Config{
		Routes:          []proxy.Route{route},
		ReservedHeaders: []string{"Secure-Session-Registration", "Secure-Session-Challenge"},
		ErrorLog:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	gw := startGateway(t, p, nil)
	_, _, h := get(t, gw.URL+"/api/x", nil)
	if h.Get("Secure-Session-Registration") != "" || h.Get("Secure-Session-Challenge") != "" || h.Get("X-Kept") != "yes" {
		t.Fatalf("headers to the client: %v", h)
	}
}
