package gateway_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoginCookieAttributes(t *testing.T) {
	e := newEnv(t)
	for _, remember := range []bool{false, true} {
		t.Run("remember="+strconv.FormatBool(remember), func(t *testing.T) {
			b := e.browser()
			r := b.postJSON("/auth/login", map[string]any{"username": "alice", "password": password, "remember": remember})
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Text)
			}
			line := sessionCookieLine(r.Header)
			c, err := http.ParseSetCookie(line)
			if err != nil {
				t.Fatalf("Set-Cookie %q: %v", line, err)
			}
			if c.Name != "__Host-Http-session" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
				t.Errorf("cookie %q: want __Host-Http-session; Secure; HttpOnly; SameSite=Lax; Path=/; no Domain", line)
			}
			if len(c.Value) != 43 {
				t.Errorf("token length %d, want 43 (256 bits base64url)", len(c.Value))
			}
			hasMaxAge := strings.Contains(line, "Max-Age=") || strings.Contains(line, "Expires=")
			if hasMaxAge != remember {
				t.Errorf("cookie %q: Max-Age present = %v, want %v (remember me only)", line, hasMaxAge, remember)
			}
			if remember && c.MaxAge <= 0 {
				t.Errorf("remembered cookie Max-Age = %d, want > 0", c.MaxAge)
			}
			if got := r.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got)
			}
			body := r.json(t)
			if body["user"] != "alice" || body["csrf_token"] == "" || body["email"] != "alice@example.com" {
				t.Errorf("login body %v", body)
			}
			if roles, _ := body["roles"].([]any); len(roles) != 2 {
				t.Errorf("roles %v, want [admin dev]", body["roles"])
			}
			if strings.Contains(r.Text, c.Value) {
				t.Error("the session token appears in the response body")
			}
		})
	}
	// The token never reaches the logs; the session appears as a hash prefix.
	logins := e.logs.events("login")
	var audited int
	for _, ev := range logins {
		if ev["outcome"] == "success" {
			audited++
			if s, _ := ev["session"].(string); !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(s) {
				t.Errorf("login audit session %q, want a 12-hex-digit hash prefix", s)
			}
			if ev["client_ip"] != "127.0.0.1" || ev["user"] != "alice" {
				t.Errorf("login audit %v", ev)
			}
		}
	}
	if audited != 2 {
		t.Errorf("%d successful login audit events, want 2", audited)
	}
}

func TestLoginIssuesNewToken(t *testing.T) {
	e := newEnv(t)

	t.Run("planted anonymous session", func(t *testing.T) {
		// An attacker gets a real anonymous session and plants its cookie
		// in the victim's browser before the victim logs in.
		planted := e.anonymousToken()
		victim := e.browser()
		victim.token = planted
		victim.login("alice")
		if victim.token == planted || victim.token == "" {
			t.Fatal("login kept the planted token")
		}
		attacker := e.browser()
		attacker.token = planted
		if attacker.loggedIn() {
			t.Fatal("the planted token is logged in after the victim's login")
		}
		if !victim.loggedIn() {
			t.Fatal("the victim's new token does not work")
		}
	})

	t.Run("re-login", func(t *testing.T) {
		b := e.browser()
		b.login("alice")
		old := b.token
		b.login("bob")
		if b.token == old {
			t.Fatal("second login kept the token")
		}
		replay := e.browser()
		replay.token = old
		if replay.loggedIn() {
			t.Fatal("the token from before the second login still works")
		}
		if got := b.get("/auth/session").json(t)["user"]; got != "bob" {
			t.Fatalf("user %v, want bob", got)
		}
	})
}

// anonymousToken creates an anonymous session through the manager, the
// way any page that stores a value before login would.
func (e *env) anonymousToken() string {
	e.t.Helper()
	srv := e.manager.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.manager.Session(r).Put("cart", "1")
	}))
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	rec := newRecorder()
	srv.ServeHTTP(rec, req)
	token := setCookieToken(e.t, rec.Header())
	if token == "" {
		e.t.Fatal("no anonymous session cookie")
	}
	return token
}

func TestLogout(t *testing.T) {
	e := newEnv(t)

	t.Run("fetch", func(t *testing.T) {
		b := e.minted("alice")
		old := b.token
		r := b.do(http.MethodPost, "/auth/logout", "", "", "X-CSRF-Token", b.csrf())
		if r.Status != http.StatusNoContent {
			t.Fatalf("status %d: %s", r.Status, r.Text)
		}
		line := sessionCookieLine(r.Header)
		if c, err := http.ParseSetCookie(line); err != nil || c.Value != "" || c.MaxAge >= 0 {
			t.Errorf("logout Set-Cookie %q, want an expired empty cookie", line)
		}
		// "storage" only: "cookies" would clear the registrable domain's,
		// the known-device cookie and a provider's session cookie included.
		if got := r.Header.Get("Clear-Site-Data"); got != `"storage"` {
			t.Errorf("Clear-Site-Data %q, want \"storage\"", got)
		}
		// The old cookie, replayed, is refused everywhere.
		replay := e.browser()
		replay.token = old
		if r := replay.get("/auth/session"); r.Status != http.StatusUnauthorized {
			t.Errorf("replayed /auth/session: status %d", r.Status)
		}
		if r := replay.get("/api/data"); r.Status != http.StatusUnauthorized {
			t.Errorf("replayed /api/data: status %d", r.Status)
		}
		if r := replay.get("/app", "Sec-Fetch-Mode", "navigate"); r.Status != http.StatusSeeOther {
			t.Errorf("replayed /app navigation: status %d", r.Status)
		}
		if ev := e.logs.events("logout"); len(ev) == 0 || ev[len(ev)-1]["user"] != "alice" || ev[len(ev)-1]["outcome"] != "success" {
			t.Errorf("logout audit events %v", ev)
		}
	})

	t.Run("form", func(t *testing.T) {
		b := e.minted("alice")
		r := b.postForm("/auth/logout", url.Values{"csrf_token": {b.csrf()}}, "Sec-Fetch-Mode", "navigate")
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/login?ended=logout" {
			t.Fatalf("status %d, Location %q", r.Status, r.Header.Get("Location"))
		}
		if b.token != "" {
			t.Fatal("cookie not cleared")
		}
	})

	t.Run("form without token", func(t *testing.T) {
		b := e.minted("alice")
		r := b.postForm("/auth/logout", url.Values{}, "Sec-Fetch-Mode", "navigate")
		if r.Status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", r.Status)
		}
		if !b.loggedIn() {
			t.Fatal("a logout form without the CSRF field ended the session")
		}
	})

	t.Run("cross-site", func(t *testing.T) {
		b := e.minted("alice")
		for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", ""} {
			r := b.do(http.MethodPost, "/auth/logout", ct, "csrf_token="+b.csrf(), "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")
			if r.Status != http.StatusForbidden {
				t.Errorf("cross-site logout (%q): status %d, want 403", ct, r.Status)
			}
		}
		// Old browsers without Fetch Metadata: a foreign Origin is refused too.
		r := b.do(http.MethodPost, "/auth/logout", "", "", "Sec-Fetch-Site", "", "Sec-Fetch-Mode", "", "Origin", "https://evil.example")
		if r.Status != http.StatusForbidden {
			t.Errorf("foreign-Origin logout: status %d, want 403", r.Status)
		}
		if !b.loggedIn() {
			t.Fatal("a cross-site request ended the session")
		}
		// Login CSRF: a cross-site page cannot log the browser in either.
		r = e.browser().postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}},
			"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")
		if r.Status != http.StatusForbidden || sessionCookieLine(r.Header) != "" {
			t.Errorf("cross-site login: status %d", r.Status)
		}
	})
}

func TestLoginOpenRedirectRefused(t *testing.T) {
	e := newEnv(t)
	tests := []struct{ returnTo, want string }{
		{"/app/settings?tab=2", "/app/settings?tab=2"},
		{"/", "/"},
		{"", "/"},
		{"//evil.com", "/"},
		{"///evil.com", "/"},
		{`/\evil.com`, "/"},
		{`\\evil.com`, "/"},
		{"https://evil.com", "/"},
		{"http:evil.com", "/"},
		{"javascript:alert(1)", "/"},
		{"/%2F%2Fevil.com", "/"},
		{"/%2f/evil.com", "/"},
		{"/%5Cevil.com", "/"},
		{"/%252F%252Fevil.com", "/"},
		{"/\t/evil.com", "/"},
		{"/%09/evil.com", "/"},
		{"/\r\nLocation: https://evil.com", "/"},
		{" /app", "/"},
		{"evil.com", "/"},
		{"app/page", "/"},
	}
	// The redirect after a form login: one login per case, so run them
	// side by side (each costs a password hash).
	for _, tt := range tests {
		t.Run("login/"+tt.returnTo, func(t *testing.T) {
			t.Parallel()
			b := e.browser()
			r := b.postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}, "return_to": {tt.returnTo}},
				"Sec-Fetch-Mode", "navigate")
			if r.Status != http.StatusSeeOther {
				t.Fatalf("status %d: %s", r.Status, r.Text)
			}
			if got := r.Header.Get("Location"); got != tt.want {
				t.Errorf("return_to %q: Location %q, want %q", tt.returnTo, got, tt.want)
			}
		})
	}
	// The hidden field of the login page is sanitised the same way.
	for _, tt := range tests {
		r := e.browser().get("/auth/login?return_to="+url.QueryEscape(tt.returnTo), "Sec-Fetch-Mode", "navigate")
		field := regexp.MustCompile(`name="return_to" value="([^"]*)"`).FindStringSubmatch(r.Text)
		if field == nil {
			t.Fatalf("no return_to field in the login page")
		}
		if got := htmlUnescape(field[1]); got != tt.want {
			t.Errorf("login page return_to for %q: %q, want %q", tt.returnTo, got, tt.want)
		}
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	wrong := map[string]string{"username": "alice", "password": "wrong password!"}
	var r response
	for i := range 10 {
		r = b.postJSON("/auth/login", wrong)
		if r.Status == http.StatusTooManyRequests {
			break
		}
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: status %d", i, r.Status)
		}
	}
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("no 429 after 10 failures")
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1", r.Header.Get("Retry-After"))
	}
	if body := r.json(t); body["error"] != "throttled" {
		t.Errorf("body %v", body)
	}
	// The right password is refused too while throttled, on the form as well.
	r = b.postForm("/auth/login", url.Values{"username": {"alice"}, "password": {password}}, "Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("form while throttled: status %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	if !strings.Contains(r.Text, "Too many attempts") {
		t.Error("the login page does not say why")
	}
	// After the wait, the right password works.
	e.clock.Advance(time.Duration(secs+1) * time.Second)
	b.login("alice")
	if n := len(e.logs.events("login")); n < 5 {
		t.Errorf("%d login audit events, want one per attempt", n)
	}
	assertMetric(t, e, `cloakroom_logins_total{outcome="throttled"}`, 2)
}

func TestLoginFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	normalize := func(r response, user string) string {
		h := r.Header.Clone()
		h.Del("Date")
		h.Del("Content-Length")
		var keys []string
		for k, v := range h {
			keys = append(keys, k+"="+strings.Join(v, ","))
		}
		return strconv.Itoa(r.Status) + "|" + strings.Join(sorted(keys), "|") + "|" + strings.ReplaceAll(r.Text, user, "USER")
	}
	for _, mode := range []string{"json", "form"} {
		send := func(user, pass string) response {
			b := e.browser()
			if mode == "json" {
				return b.postJSON("/auth/login", map[string]string{"username": user, "password": pass})
			}
			return b.postForm("/auth/login", url.Values{"username": {user}, "password": {pass}}, "Sec-Fetch-Mode", "navigate")
		}
		unknown := send("nobody-here", "wrong password!")
		wrongPass := send("bob", "wrong password!")
		if unknown.Status != http.StatusUnauthorized {
			t.Fatalf("%s: unknown user: status %d", mode, unknown.Status)
		}
		if a, b := normalize(unknown, "nobody-here"), normalize(wrongPass, "bob"); a != b {
			t.Errorf("%s: unknown user and wrong password differ:\n%s\n%s", mode, a, b)
		}
		if !strings.Contains(unknown.Text, "Invalid username or password.") {
			t.Errorf("%s: message %q", mode, unknown.Text)
		}
	}
}

func TestLoginBadInput(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("x", 9000)
	tests := []struct {
		name, contentType, body string
		status                  int
	}{
		{"no content type", "", `{"username":"alice","password":"x"}`, http.StatusUnsupportedMediaType},
		{"xml", "application/xml", `<login/>`, http.StatusUnsupportedMediaType},
		{"multipart", "multipart/form-data; boundary=x", "--x--", http.StatusUnsupportedMediaType},
		{"invalid json", "application/json", `{"username":`, http.StatusBadRequest},
		{"not an object", "application/json", `["alice"]`, http.StatusBadRequest},
		{"two objects", "application/json", `{"username":"a","password":"b"}{}`, http.StatusBadRequest},
		{"unknown field", "application/json", `{"username":"a","password":"b","admin":true}`, http.StatusBadRequest},
		{"wrong type", "application/json", `{"username":1,"password":"b"}`, http.StatusBadRequest},
		{"empty body", "application/json", ``, http.StatusBadRequest},
		{"missing password", "application/json", `{"username":"alice"}`, http.StatusBadRequest},
		{"control character", "application/json", `{"username":"al\u0000ice","password":"b"}`, http.StatusBadRequest},
		{"long username", "application/json", `{"username":"` + strings.Repeat("a", 300) + `","password":"b"}`, http.StatusBadRequest},
		{"long password", "application/json", `{"username":"alice","password":"` + strings.Repeat("a", 1100) + `"}`, http.StatusBadRequest},
		{"too large", "application/json", `{"username":"alice","password":"` + long + `"}`, http.StatusRequestEntityTooLarge},
		{"form duplicate field", "application/x-www-form-urlencoded", "username=alice&username=bob&password=x", http.StatusBadRequest},
		{"form bad remember", "application/x-www-form-urlencoded", "username=alice&password=x&remember=maybe", http.StatusBadRequest},
		{"form bad escape", "application/x-www-form-urlencoded", "username=%zz&password=x", http.StatusBadRequest},
		{"form too large", "application/x-www-form-urlencoded", "username=alice&password=" + long, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.browser().do(http.MethodPost, "/auth/login", tt.contentType, tt.body)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Text)
			}
			if strings.HasPrefix(tt.contentType, "application/x-www-form-urlencoded") {
				// Forms get the login page back, with the message.
				if !strings.Contains(r.Text, `id="error"`) {
					t.Errorf("no error message in the page: %s", r.Text)
				}
				return
			}
			if msg, _ := r.json(t)["message"].(string); msg == "" {
				t.Errorf("no message in %s", r.Text)
			}
		})
	}
	// A form error re-renders the page with the message.
	r := e.browser().postForm("/auth/login", url.Values{"username": {"alice"}}, "Sec-Fetch-Mode", "navigate")
	if r.Status != http.StatusBadRequest || !strings.Contains(r.Text, "Enter a username and a password.") {
		t.Errorf("form error: status %d: %s", r.Status, r.Text)
	}
	assertMetric(t, e, `cloakroom_logins_total{outcome="bad_request"}`, float64(len(tests)+1))
}
