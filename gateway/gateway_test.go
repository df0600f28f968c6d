package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func htmlUnescape(s string) string { return html.UnescapeString(s) }

func sorted(s []string) []string { slices.Sort(s); return s }

func writeFile(name, content string) error { return os.WriteFile(name, []byte(content), 0o644) }

var inlineHandler = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)

// assertMetric checks one sample of the gateway's registry, named as in
// the exposition format: name{label="value"}.
func assertMetric(t *testing.T, e *env, sample string, want float64) {
	t.Helper()
	name, labels, _ := strings.Cut(strings.TrimSuffix(sample, "}"), "{")
	families, err := e.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(parts, ",") != labels {
				continue
			}
			var got float64
			switch {
			case m.GetCounter() != nil:
				got = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got = float64(m.GetHistogram().GetSampleCount())
			}
			if got != want {
				t.Errorf("%s = %v, want %v", sample, got, want)
			}
			return
		}
	}
	t.Errorf("metric %s not found", sample)
}

func TestUnauthenticatedRequests(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()
	tests := []struct {
		name, path string
		headers    []string
		status     int
		location   string
	}{
		{"navigation", "/app/dashboard?x=1", []string{"Sec-Fetch-Mode", "navigate", "Accept", "text/html"}, 303, "/auth/login?return_to=%2Fapp%2Fdashboard%3Fx%3D1"},
		{"navigation without fetch metadata", "/app", []string{"Sec-Fetch-Mode", "", "Sec-Fetch-Site", "", "Accept", "text/html,application/xhtml+xml"}, 303, "/auth/login?return_to=%2Fapp"},
		{"root navigation", "/", []string{"Sec-Fetch-Mode", "navigate"}, 303, "/auth/login?return_to=%2F"},
		{"fetch", "/app/dashboard", []string{"Sec-Fetch-Mode", "cors", "Accept", "*/*"}, 401, ""},
		{"fetch asking for html", "/app", []string{"Sec-Fetch-Mode", "cors", "Accept", "text/html"}, 401, ""},
		{"xhr", "/app", []string{"Sec-Fetch-Mode", "", "X-Requested-With", "XMLHttpRequest", "Accept", "text/html"}, 401, ""},
		{"old client wanting json", "/app", []string{"Sec-Fetch-Mode", "", "Sec-Fetch-Site", "", "Accept", "application/json"}, 401, ""},
		{"api fetch", "/api/data", nil, 401, ""},
		{"api navigation", "/api/data", []string{"Sec-Fetch-Mode", "navigate"}, 303, "/auth/login"},
		{"index.html", "/index.html", []string{"Sec-Fetch-Mode", "navigate"}, 303, "/auth/login?return_to=%2Findex.html"},
		{"public path", "/public/landing.html", nil, 200, ""},
		{"public prefix with slash", "/assets/style.css", nil, 200, ""},
		{"not public: prefix without boundary", "/publicity", []string{"Sec-Fetch-Mode", "navigate"}, 303, "/auth/login?return_to=%2Fpublicity"},
		{"login page", "/auth/login", nil, 200, ""},
		{"stylesheet", "/auth/assets/style.css", nil, 200, ""},
		{"assets folder", "/auth/assets/", nil, 404, ""},
		{"jwks", "/.well-known/jwks.json", nil, 200, ""},
		{"unknown auth endpoint", "/auth/nope", nil, 404, ""},
		{"session", "/auth/session", []string{"Sec-Fetch-Mode", "navigate"}, 401, ""},
		{"sessions", "/auth/sessions", nil, 401, ""},
		{"account page", "/auth/account", []string{"Sec-Fetch-Mode", "navigate"}, 303, "/auth/login?return_to=%2Fauth%2Faccount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := anon.get(tt.path, tt.headers...)
			if r.Status != tt.status {
				t.Fatalf("GET %s: status %d, want %d: %s", tt.path, r.Status, tt.status, r.Text)
			}
			if got := r.Header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			if r.Status == http.StatusUnauthorized {
				body := r.json(t)
				if body["error"] != "unauthenticated" || !strings.HasPrefix(body["login_url"].(string), "/auth/login") {
					t.Errorf("401 body %v", body)
				}
			}
		})
	}
	if n := e.api.hits.Load(); n != 0 {
		t.Errorf("upstream reached %d times without a session", n)
	}
	if got := anon.get("/auth/assets/style.css").Header.Get("Content-Type"); !strings.HasPrefix(got, "text/css") {
		t.Errorf("stylesheet Content-Type %q", got)
	}
}

func TestProxyIdentity(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	r := b.get("/api/data?q=1",
		"X-Forwarded-User", "mallory",
		"X-Forwarded-Email", "mallory@evil.example",
		"X-Forwarded-Groups", "root",
		"Authorization", "Bearer forged.jwt.token",
		"X-CSRF-Token", "secret-ish",
		"Cookie", cookieName+"="+b.token+"; theme=dark")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Text)
	}
	var got echo
	if err := json.Unmarshal([]byte(r.Text), &got); err != nil {
		t.Fatal(err)
	}
	h := got.Headers
	if v := h.Get("X-Csrf-Token"); v != "" {
		t.Errorf("upstream received X-CSRF-Token %q", v)
	}
	if got.Path != "/api/data?q=1" {
		t.Errorf("upstream path %q", got.Path)
	}
	if v := h.Values("X-Forwarded-User"); len(v) != 1 || v[0] != "alice" {
		t.Errorf("X-Forwarded-User %q, want [alice]", v)
	}
	if v := h.Values("X-Forwarded-Email"); len(v) != 1 || v[0] != "alice@example.com" {
		t.Errorf("X-Forwarded-Email %q", v)
	}
	if v := h.Get("X-Forwarded-Groups"); v != "admin,dev" {
		t.Errorf("X-Forwarded-Groups %q, want admin,dev", v)
	}
	if c := h.Get("Cookie"); strings.Contains(c, cookieName) || strings.Contains(c, b.token) || !strings.Contains(c, "theme=dark") {
		t.Errorf("upstream Cookie %q: want theme=dark only", c)
	}
	if strings.Contains(r.Text, b.token) {
		t.Error("the session token reached the upstream")
	}
	auth := h.Values("Authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") || strings.Contains(auth[0], "forged") {
		t.Fatalf("upstream Authorization %q", auth)
	}
	// The upstream could not plant a session cookie.
	for _, line := range r.Header.Values("Set-Cookie") {
		if strings.Contains(line, "planted-by-upstream") {
			t.Errorf("upstream Set-Cookie passed through: %q", line)
		}
	}

	// The JWT verifies against the published JWKS, and expires.
	jwks := e.browser().get("/.well-known/jwks.json")
	if jwks.Status != http.StatusOK {
		t.Fatalf("JWKS status %d", jwks.Status)
	}
	token := strings.TrimPrefix(auth[0], "Bearer ")
	claims, err := upstreamjwt.Verify(token, []byte(jwks.Text), "/api/", time.Now()) // the route's audience
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if claims.Subject != "alice" || claims.Email != "alice@example.com" || !slices.Equal(claims.Groups, []string{"admin", "dev"}) {
		t.Errorf("claims %+v", claims)
	}
	if ttl := claims.ExpiresAt.Sub(claims.IssuedAt); ttl <= 0 || ttl > time.Minute {
		t.Errorf("token lifetime %v, want at most a minute", ttl)
	}
	if _, err := upstreamjwt.Verify(token, []byte(jwks.Text), "/api/", time.Now().Add(2*time.Minute)); !errors.Is(err, upstreamjwt.ErrTokenExpired) {
		t.Errorf("Verify two minutes later: %v, want ErrTokenExpired", err)
	}
	if _, err := upstreamjwt.Verify(token, []byte(jwks.Text), "other-api", time.Now()); err == nil {
		t.Error("Verify accepted another audience")
	}
	assertMetric(t, e, "cloakroom_proxy_request_duration_seconds{route=\"/api/\"}", 1)
}

func TestFrontendUpstream(t *testing.T) {
	front := newUpstream(t)
	u, _ := url.Parse(front.srv.URL)
	e := newEnv(t, func(c *gateway.Config) { c.Static, c.Frontend = "", u })
	b := e.minted("bob")
	r := b.get("/app/page",
		"X-Forwarded-User", "mallory", "X-Forwarded-Groups", "root", "X-Auth-Request-User", "mallory",
		"Authorization", "Bearer forged", "Cookie", cookieName+"="+b.token+"; theme=dark")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Text)
	}
	var got echo
	if err := json.Unmarshal([]byte(r.Text), &got); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"X-Forwarded-User", "X-Forwarded-Groups", "X-Auth-Request-User", "Authorization"} {
		if v := got.Headers.Get(name); v != "" {
			t.Errorf("frontend received %s: %q", name, v)
		}
	}
	if c := got.Headers.Get("Cookie"); c != "theme=dark" {
		t.Errorf("frontend Cookie %q, want theme=dark", c)
	}
	if lines := r.Header.Values("Set-Cookie"); slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "planted-by-upstream") }) {
		t.Errorf("frontend planted the session cookie: %q", lines)
	}
	if !slices.ContainsFunc(r.Header.Values("Set-Cookie"), func(l string) bool { return strings.HasPrefix(l, "upstream_pref=") }) {
		t.Error("the frontend's own cookies were dropped")
	}
	// Without a session the frontend is never asked.
	hits := front.hits.Load()
	if r := e.browser().get("/app/page", "Sec-Fetch-Mode", "navigate"); r.Status != http.StatusSeeOther {
		t.Errorf("anonymous: status %d", r.Status)
	}
	if front.hits.Load() != hits {
		t.Error("the frontend was reached without a session")
	}
}

func TestStaticSPA(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/", 200, "cloakroom test app"},
		{"/index.html", 200, "cloakroom test app"},
		{"/app/settings/profile", 200, "cloakroom test app"},
		{"/app.js", 200, `console.log("app")`},
		{"/missing.js", 404, ""},
		{"/docs/", 200, "cloakroom test app"},
		{"/docs", 200, "cloakroom test app"},
		{"/.env", 404, ""},
		{"/assets/.hidden", 404, ""},
		{"/leak.txt", 404, ""},
		{"/docs/readme.txt", 200, "docs"},
	}
	for _, tt := range tests {
		r := b.get(tt.path)
		if r.Status != tt.status || !strings.Contains(r.Text, tt.want) {
			t.Errorf("GET %s: status %d %q, want %d with %q", tt.path, r.Status, r.Text, tt.status, tt.want)
		}
		if strings.Contains(r.Text, "SECRET") || strings.Contains(r.Text, "OUTSIDE") || strings.Contains(r.Text, "readme.txt") {
			t.Errorf("GET %s leaked %q", tt.path, r.Text)
		}
	}
	if r := b.do(http.MethodPost, "/app", "", ""); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("POST /app: status %d, want 405", r.Status)
	}
	if got := b.get("/app.js").Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("nosniff missing on static files")
	}
}

func TestSessionEndpoints(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")

	r := b.get("/auth/session")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	info := r.json(t)
	for _, k := range []string{"user", "email", "roles", "csrf_token", "created_at", "idle_expires_at", "absolute_expires_at"} {
		if _, ok := info[k]; !ok {
			t.Errorf("/auth/session lacks %q: %v", k, info)
		}
	}
	if info["user"] != "alice" || info["email"] != "alice@example.com" {
		t.Errorf("info %v", info)
	}
	// Reading the session changes nothing: no cookie, no new expiry, no
	// store write (the version stays put).
	key, _ := cloakroom.ParseToken(b.token)
	before, _, _ := e.store.mem.Find(context.Background(), key)
	e.clock.Advance(30 * time.Second) // under the one-minute TouchInterval
	r2 := b.get("/auth/session")
	after, _, _ := e.store.mem.Find(context.Background(), key)
	if r2.json(t)["idle_expires_at"] != info["idle_expires_at"] || after.Version != before.Version {
		t.Errorf("polling /auth/session extended the session: version %d -> %d", before.Version, after.Version)
	}
	if sessionCookieLine(r2.Header) != "" {
		t.Error("/auth/session set a cookie")
	}
	if r2.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r2.Header.Get("Cache-Control"))
	}
}

func TestDevicesAPI(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	other := e.minted("alice")
	third := e.minted("alice")
	bobs := e.minted("bob")

	list := func() []cloakroom.Device {
		t.Helper()
		r := b.get("/auth/sessions")
		if r.Status != http.StatusOK {
			t.Fatalf("GET /auth/sessions: %d %s", r.Status, r.Text)
		}
		var v struct{ Sessions []cloakroom.Device }
		if err := json.Unmarshal([]byte(r.Text), &v); err != nil {
			t.Fatal(err)
		}
		return v.Sessions
	}
	devices := list()
	if len(devices) != 3 {
		t.Fatalf("%d sessions, want 3", len(devices))
	}
	var current, otherHandle string
	for _, d := range devices {
		if d.Current {
			current = d.Handle
		} else if otherHandle == "" {
			otherHandle = d.Handle
		}
		if d.Label != "Chrome on Linux" || d.IP != "127.0.0.1" {
			t.Errorf("device %+v", d)
		}
	}
	if current == "" {
		t.Fatal("no session marked current")
	}

	csrf := b.csrf()
	// A wrong X-CSRF-Token is refused even with Fetch Metadata.
	if r := b.do(http.MethodDelete, "/auth/sessions/"+otherHandle, "", "", "X-CSRF-Token", "wrong"); r.Status != http.StatusForbidden {
		t.Errorf("wrong CSRF header: status %d", r.Status)
	}
	if r := b.do(http.MethodDelete, "/auth/sessions/not*a*handle", "", "", "X-CSRF-Token", csrf); r.Status != http.StatusBadRequest {
		t.Errorf("bad handle: status %d", r.Status)
	}
	if r := b.do(http.MethodDelete, "/auth/sessions/AAAAAAAAAAAAAAAAAAAAAA", "", "", "X-CSRF-Token", csrf); r.Status != http.StatusNotFound {
		t.Errorf("unknown handle: status %d", r.Status)
	}
	// Bob cannot revoke Alice's sessions by handle.
	if r := bobs.do(http.MethodDelete, "/auth/sessions/"+otherHandle, "", "", "X-CSRF-Token", bobs.csrf()); r.Status != http.StatusNotFound {
		t.Errorf("bob revoking alice's handle: status %d", r.Status)
	}
	if r := b.do(http.MethodDelete, "/auth/sessions/"+otherHandle, "", "", "X-CSRF-Token", csrf); r.Status != http.StatusNoContent {
		t.Fatalf("revoke: status %d %s", r.Status, r.Text)
	}
	if len(list()) != 2 {
		t.Error("the revoked session is still listed")
	}
	alive := 0
	for _, c := range []*browser{other, third} {
		if c.loggedIn() {
			alive++
		}
	}
	if alive != 1 {
		t.Errorf("%d of the two other sessions alive, want 1", alive)
	}

	// Revoke others: this browser continues under a new token and CSRF token.
	oldToken := b.token
	r := b.do(http.MethodPost, "/auth/sessions/revoke-others", "", "", "X-CSRF-Token", csrf)
	if r.Status != http.StatusOK {
		t.Fatalf("revoke-others: %d %s", r.Status, r.Text)
	}
	newCSRF := r.json(t)["csrf_token"]
	if b.token == oldToken || newCSRF == csrf || newCSRF == "" {
		t.Error("revoke-others did not rotate the token")
	}
	if other.loggedIn() || third.loggedIn() || !b.loggedIn() || !bobs.loggedIn() {
		t.Error("revoke-others: wrong sessions survived")
	}

	// Revoke all: this browser too.
	r = b.do(http.MethodPost, "/auth/sessions/revoke-all", "", "", "X-CSRF-Token", newCSRF.(string))
	if r.Status != http.StatusNoContent || b.token != "" {
		t.Fatalf("revoke-all: %d %s", r.Status, r.Text)
	}
	old := e.browser()
	old.token = oldToken
	if old.loggedIn() || !bobs.loggedIn() {
		t.Error("revoke-all: wrong sessions survived")
	}
	assertMetric(t, e, `cloakroom_revocations_total{kind="device"}`, 1)
	assertMetric(t, e, `cloakroom_revocations_total{kind="others"}`, 1)
	assertMetric(t, e, `cloakroom_revocations_total{kind="all"}`, 1)
	if n := len(e.logs.events("revocation")); n < 3 {
		t.Errorf("%d revocation audit events, want 3 or more", n)
	}
}

func TestAccountPage(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	other := e.minted("alice")
	nav := []string{"Sec-Fetch-Mode", "navigate", "Accept", "text/html"}

	r := b.get("/auth/account", nav...)
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Text)
	}
	for _, want := range []string{"this device", "Chrome on Linux", "127.0.0.1", `id="logout"`, `action="/auth/account/revoke"`,
		`action="/auth/account/revoke-others"`, `action="/auth/account/revoke-all"`, "alice@example.com"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	if !strings.Contains(r.Text, "after 30 minutes without activity") || !strings.Contains(r.Text, "just now") {
		t.Error("account page lacks the idle timeout or the last-seen time")
	}
	e.clock.Advance(5 * time.Minute)
	if page := b.get("/auth/account", nav...); !strings.Contains(page.Text, "5 minutes ago") {
		t.Error("the other device's last-seen time is not relative to the clock")
	}
	csrf := b.csrf()
	if strings.Count(r.Text, `name="csrf_token" value="`+csrf+`"`) != 7 {
		t.Errorf("want the CSRF token in the 7 forms (logout, revoke, others, all, password, a name for each of the 2 devices)")
	}
	otherHandle := handleOf(t, e, other)

	// Every form POST needs the hidden field, even same-origin.
	for _, form := range []url.Values{{"handle": {otherHandle}}, {"handle": {otherHandle}, "csrf_token": {"wrong"}}} {
		r := b.postForm("/auth/account/revoke", form, nav...)
		if r.Status != http.StatusForbidden {
			t.Errorf("revoke with %v: status %d, want 403", form, r.Status)
		}
	}
	// The header alone does not replace the field on form posts.
	if r := b.postForm("/auth/account/revoke-all", url.Values{}, "X-CSRF-Token", csrf); r.Status != http.StatusForbidden {
		t.Errorf("revoke-all with header but no field: status %d", r.Status)
	}
	if !other.loggedIn() || !b.loggedIn() {
		t.Fatal("a refused form changed sessions")
	}

	r = b.postForm("/auth/account/revoke", url.Values{"handle": {otherHandle}, "csrf_token": {csrf}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account?done=revoked" {
		t.Fatalf("revoke: status %d, Location %q", r.Status, r.Header.Get("Location"))
	}
	if other.loggedIn() {
		t.Fatal("revoked session still alive")
	}
	if page := b.get("/auth/account?done=revoked", nav...); !strings.Contains(page.Text, "The session was revoked") || strings.Contains(page.Text, otherHandle) {
		t.Error("the page after revoking lacks the notice or still lists the session")
	}
	// Unknown done= values are not reflected.
	if page := b.get("/auth/account?done=%3Cscript%3E", nav...); strings.Contains(page.Text, "script") {
		t.Error("done= reflected")
	}

	third := e.minted("alice")
	r = b.postForm("/auth/account/revoke-others", url.Values{"csrf_token": {csrf}}, nav...)
	if r.Status != http.StatusSeeOther || third.loggedIn() || !b.loggedIn() {
		t.Fatalf("revoke-others: status %d", r.Status)
	}
	r = b.postForm("/auth/account/revoke-all", url.Values{"csrf_token": {b.csrf()}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/login?ended=everywhere" || b.token != "" {
		t.Fatalf("revoke-all: status %d, Location %q", r.Status, r.Header.Get("Location"))
	}
}

func handleOf(t *testing.T, e *env, b *browser) string {
	t.Helper()
	key, _ := cloakroom.ParseToken(b.token)
	rec, found, err := e.store.mem.Find(context.Background(), key)
	if err != nil || !found {
		t.Fatalf("session not found: %v", err)
	}
	return rec.Handle
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	pages := map[string]response{
		"login (anonymous)": e.browser().get("/auth/login", "Sec-Fetch-Mode", "navigate"),
		"login (signed in)": b.get("/auth/login", "Sec-Fetch-Mode", "navigate"),
		"account":           b.get("/auth/account", "Sec-Fetch-Mode", "navigate"),
		"login error":       e.browser().postForm("/auth/login", url.Values{"username": {"x"}, "password": {"wrong password"}}, "Sec-Fetch-Mode", "navigate"),
	}
	for name, r := range pages {
		h := r.Header
		for header, want := range map[string]string{
			"Content-Security-Policy":   csp,
			"X-Frame-Options":           "DENY",
			"Referrer-Policy":           "no-referrer",
			"X-Content-Type-Options":    "nosniff",
			"Cache-Control":             "no-store",
			"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
			"Content-Type":              "text/html; charset=utf-8",
		} {
			if got := h.Get(header); got != want {
				t.Errorf("%s: %s = %q, want %q", name, header, got, want)
			}
		}
		lower := strings.ToLower(r.Text)
		if inlineHandler.MatchString(r.Text) {
			t.Errorf("%s: inline event handler", name)
		}
		for _, banned := range []string{"<script", " style=", "<style", "javascript:"} {
			if strings.Contains(lower, banned) {
				t.Errorf("%s: contains %q, which the CSP would block", name, banned)
			}
		}
		if !strings.Contains(r.Text, `href="/auth/assets/style.css"`) {
			t.Errorf("%s: no stylesheet link", name)
		}
	}
	if !strings.Contains(pages["account"].Text, `id="logout"`) || !strings.Contains(pages["login (signed in)"].Text, `id="logout"`) {
		t.Error("authenticated pages lack the logout button")
	}
	if !strings.Contains(pages["login error"].Text, "Invalid username or password.") || pages["login error"].Status != http.StatusUnauthorized {
		t.Errorf("login error page: status %d", pages["login error"].Status)
	}
	// HSTS everywhere on TLS, including JSON and proxied responses.
	if got := b.get("/api/x").Header.Get("Strict-Transport-Security"); got == "" {
		t.Error("no HSTS on proxied responses")
	}

	plain := newEnv(t, func(c *gateway.Config) { c.TLS = false })
	if got := plain.browser().get("/auth/login").Header.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("HSTS without TLS: %q", got)
	}
}

func TestAccountChangesEndSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		change func() error
		undo   func() error
	}{
		{"disable", func() error { return e.accounts.Disable(ctx, "bob") }, func() error { return e.accounts.Enable(ctx, "bob") }},
		{"role change", func() error { return e.accounts.SetRoles(ctx, "bob", []string{"viewer"}) }, nil},
		{"password change", func() error { return e.accounts.SetPassword(ctx, "bob", password+" v2") }, nil},
		{"delete", func() error { return e.accounts.Delete(ctx, "bob") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.minted("bob")
			alice := e.minted("alice")
			if !b.loggedIn() {
				t.Fatal("not logged in")
			}
			if err := tt.change(); err != nil {
				t.Fatal(err)
			}
			if b.loggedIn() {
				t.Errorf("%s: the session survived", tt.name)
			}
			if r := b.get("/api/data"); r.Status != http.StatusUnauthorized {
				t.Errorf("%s: API status %d", tt.name, r.Status)
			}
			if !alice.loggedIn() {
				t.Errorf("%s: another user's session ended", tt.name)
			}
			if tt.undo != nil {
				if err := tt.undo(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// A disabled, deleted user cannot log in again either.
	r := e.browser().postJSON("/auth/login", map[string]string{"username": "bob", "password": password + " v2"})
	if r.Status != http.StatusUnauthorized {
		t.Errorf("deleted user login: status %d", r.Status)
	}
}

func TestStoreFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	public := e.browser()
	e.store.fail.Store(true)
	hits := e.api.hits.Load()

	tests := []struct {
		name, path string
		headers    []string
	}{
		{"api", "/api/data", nil},
		{"spa navigation", "/app", []string{"Sec-Fetch-Mode", "navigate"}},
		{"spa fetch", "/app", nil},
		{"session", "/auth/session", nil},
		{"sessions", "/auth/sessions", nil},
		{"account", "/auth/account", []string{"Sec-Fetch-Mode", "navigate"}},
	}
	for _, tt := range tests {
		r := b.get(tt.path, tt.headers...)
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s: status %d, want 503: %s", tt.name, r.Status, r.Text)
		}
		if strings.Contains(r.Text, "cloakroom test app") || strings.Contains(r.Text, "alice") {
			t.Errorf("%s: served content while the store is down: %q", tt.name, r.Text)
		}
	}
	if e.api.hits.Load() != hits {
		t.Error("a request was proxied while the store was down")
	}
	if r := public.get("/public/landing.html"); r.Status != http.StatusOK {
		t.Errorf("public path: status %d", r.Status)
	}
	if r := public.get("/auth/login"); r.Status != http.StatusOK {
		t.Errorf("login page: status %d", r.Status)
	}
	if r := public.postJSON("/auth/login", map[string]string{"username": "alice", "password": password}); r.Status != http.StatusServiceUnavailable {
		t.Errorf("login: status %d", r.Status)
	}
	if r := e.adminDo(http.MethodGet, "/readyz", ""); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz: status %d", r.Status)
	}
	if r := e.adminDo(http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("/healthz: status %d", r.Status)
	}
	if r := e.adminDo(http.MethodGet, "/admin/users/alice/sessions", e.token); r.Status != http.StatusServiceUnavailable {
		t.Errorf("admin list: status %d", r.Status)
	}

	e.store.fail.Store(false)
	if !b.loggedIn() {
		t.Error("the session did not survive the outage")
	}
	if r := e.adminDo(http.MethodGet, "/readyz", ""); r.Status != http.StatusOK {
		t.Errorf("/readyz after recovery: status %d", r.Status)
	}
	metrics := e.adminDo(http.MethodGet, "/metrics", "").Text
	if !strings.Contains(metrics, "cloakroom_store_errors_total") || strings.Contains(metrics, "cloakroom_store_errors_total 0\n") {
		t.Error("store errors were not counted")
	}
}

func TestAdminAPI(t *testing.T) {
	e := newEnv(t)
	a1, a2, bob := e.minted("alice"), e.minted("alice"), e.minted("bob")

	for _, tt := range []struct{ name, header string }{
		{"no token", ""},
		{"wrong token", "Bearer " + randomHex(32)},
		{"basic auth", "Basic " + e.token},
		{"token prefix", "Bearer " + e.token[:len(e.token)-1]},
		{"token plus", "Bearer " + e.token + "x"},
		{"empty bearer", "Bearer "},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.admin.URL+"/admin/users/alice/sessions", nil)
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: status %d, WWW-Authenticate %q", tt.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s: body %s", tt.name, body)
		}
	}

	r := e.adminDo(http.MethodGet, "/admin/users/alice/sessions", e.token)
	if r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Text)
	}
	var list struct {
		User     string
		Sessions []cloakroom.Device
	}
	if err := json.Unmarshal([]byte(r.Text), &list); err != nil || len(list.Sessions) != 2 {
		t.Fatalf("list: %v %s", err, r.Text)
	}
	if strings.Contains(r.Text, a1.token) {
		t.Fatal("the admin API leaked a session token")
	}

	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/sessions/"+handleOf(t, e, a1), e.token); r.Status != http.StatusNoContent {
		t.Fatalf("revoke device: %d %s", r.Status, r.Text)
	}
	if a1.loggedIn() || !a2.loggedIn() {
		t.Error("revoke device ended the wrong session")
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/sessions/AAAAAAAAAAAAAAAAAAAAAA", e.token); r.Status != http.StatusNotFound {
		t.Errorf("unknown handle: %d", r.Status)
	}
	if r := e.adminDo(http.MethodDelete, "/admin/users/alice/sessions", e.token); r.Status != http.StatusNoContent {
		t.Fatalf("revoke user: %d %s", r.Status, r.Text)
	}
	if a2.loggedIn() || !bob.loggedIn() {
		t.Error("revoke user ended the wrong sessions")
	}

	a3 := e.minted("alice")
	r = e.adminDo(http.MethodPost, "/admin/sessions/revoke-all", e.token)
	if r.Status != http.StatusOK || r.json(t)["epoch"] != float64(1) {
		t.Fatalf("revoke all: %d %s", r.Status, r.Text)
	}
	if a3.loggedIn() || bob.loggedIn() {
		t.Error("revoke-all left sessions alive")
	}
	if a4 := e.minted("alice"); !a4.loggedIn() {
		t.Error("a sign-in after revoke-all does not live")
	}
	if r := e.adminDo(http.MethodGet, "/admin/nope", e.token); r.Status != http.StatusNotFound {
		t.Errorf("unknown admin path: %d", r.Status)
	}
	if r := e.adminDo(http.MethodGet, "/admin/users/%00bad/sessions", e.token); r.Status != http.StatusBadRequest {
		t.Errorf("bad user name: %d", r.Status)
	}
	assertMetric(t, e, `cloakroom_revocations_total{kind="admin_device"}`, 1)
	assertMetric(t, e, `cloakroom_revocations_total{kind="admin_user"}`, 1)
	assertMetric(t, e, `cloakroom_revocations_total{kind="admin_all"}`, 1)

	// Without a configured token the admin API does not exist.
	off := newEnv(t, func(c *gateway.Config) { c.AdminToken = "" })
	if r := off.adminDo(http.MethodGet, "/admin/users/alice/sessions", e.token); r.Status != http.StatusNotFound {
		t.Errorf("disabled admin API: %d", r.Status)
	}
	if r := off.adminDo(http.MethodGet, "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("healthz: %d", r.Status)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("alice")
	b.get("/api/data")
	e.browser().postJSON("/auth/login", map[string]string{"username": "alice", "password": "wrong password!"})

	r := e.adminDo(http.MethodGet, "/metrics", "")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	for _, want := range []string{
		`cloakroom_logins_total{outcome="success"} 1`,
		`cloakroom_logins_total{outcome="invalid_credentials"} 1`,
		`cloakroom_revocations_total{kind="device"} 0`,
		`cloakroom_store_errors_total 0`,
		`cloakroom_proxy_request_duration_seconds_count{route="/api/"} 1`,
		`cloakroom_store_duration_seconds_count{op="login"} 1`,
		`cloakroom_store_duration_seconds_count{op="load"}`,
		`cloakroom_active_sessions 1`,
	} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Registering twice in one registry is a configuration error, not a panic.
	cfg := e.cfg
	if _, err := gateway.New(cfg); !errors.Is(err, gateway.ErrInvalidConfig) {
		t.Errorf("second gateway on one registry: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := writeFile(file, "x"); err != nil {
		t.Fatal(err)
	}
	frontend, _ := url.Parse("ftp://user:pw@example.com/?q=1")
	_, err := gateway.New(gateway.Config{
		Static:      file,
		Frontend:    frontend,
		AuthPrefix:  "auth/",
		PublicPaths: []string{"assets", "/a/../b", "/ok/"},
		AdminToken:  "short",
	})
	if !errors.Is(err, gateway.ErrInvalidConfig) {
		t.Fatalf("err %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"Sessions is required", "Accounts is required", "Static and Frontend are exclusive",
		"Static:", "Frontend:", "AuthPrefix", `PublicPaths "assets"`, `PublicPaths "/a/../b"`, "AdminToken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), `"/ok/"`) {
		t.Errorf("a valid public path was reported:\n%v", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) < 9 {
		t.Errorf("want every problem as its own error, got:\n%v", err)
	}
	for _, prefix := range []string{"/", "/auth/", "/a//b", "/a b", "/.auth", "/{x}"} {
		_, err := gateway.New(gateway.Config{AuthPrefix: prefix})
		if err == nil || !strings.Contains(err.Error(), "AuthPrefix") {
			t.Errorf("AuthPrefix %q accepted", prefix)
		}
	}
	_, err = gateway.New(gateway.Config{AdminToken: strings.Repeat("a", 40) + "\n"})
	if err == nil || !strings.Contains(err.Error(), "AdminToken") {
		t.Error("an admin token with a trailing newline was accepted")
	}
}

func TestCustomAuthPrefix(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.AuthPrefix = "/_session" })
	b := e.browser()
	if r := b.get("/auth/login"); r.Status == http.StatusOK && strings.Contains(r.Text, "Sign in") {
		t.Error("the default prefix still serves the login page")
	}
	r := b.get("/app", "Sec-Fetch-Mode", "navigate")
	if r.Header.Get("Location") != "/_session/login?return_to=%2Fapp" {
		t.Errorf("Location %q", r.Header.Get("Location"))
	}
	page := b.get("/_session/login")
	if !strings.Contains(page.Text, `action="/_session/login"`) || !strings.Contains(page.Text, `href="/_session/assets/style.css"`) {
		t.Error("the login page does not use the prefix")
	}
}
