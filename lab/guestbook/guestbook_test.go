package guestbook

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

var testUsers = []User{
	{Name: "admin", Password: "admin-password", Email: "admin@example.test", Roles: []string{"admin"}},
	{Name: "guest", Password: "guest-password", Roles: []string{"guest"}},
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newServer(t *testing.T, cfg Config) (*App, *httptest.Server) {
	t.Helper()
	app, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(srv.Close)
	return app, srv
}

type call struct {
	method, path, body string
	header             http.Header
}

func do(t *testing.T, base string, c call) (int, []byte) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if c.body != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func login(t *testing.T, base, user, password string) LoginResponse {
	t.Helper()
	in, _ := json.Marshal(map[string]string{"username": user, "password": password})
	code, b := do(t, base, call{method: "POST", path: "/api/login", body: string(in)})
	if code != http.StatusOK {
		t.Fatalf("login %s: got %d %s, want 200", user, code, b)
	}
	var out LoginResponse
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{Mode: "oauth", SigningKey: []byte("short"), TokenTTL: -1,
		Users: []User{{Name: ""}, {Name: "a", Password: "x"}, {Name: "a", Password: "y"}}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"Mode", "SigningKey", "TokenTTL", "user name", "appears twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := New(Config{Mode: ModeJWT, Users: []User{{Name: "nopass"}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("jwt user without password: got %v, want ErrInvalidConfig", err)
	}
}

func TestJWTMode(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	app, srv := newServer(t, Config{Mode: ModeJWT, Users: testUsers, Now: clock.Now})

	for _, c := range []call{
		{method: "POST", path: "/api/login", body: `{"username":"admin","password":"wrong"}`},
		{method: "POST", path: "/api/login", body: `{"username":"nobody","password":"admin-password"}`},
	} {
		if code, _ := do(t, srv.URL, c); code != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", c.body, code)
		}
	}

	admin := login(t, srv.URL, "admin", "admin-password")
	guest := login(t, srv.URL, "guest", "guest-password")
	if got, want := admin.ExpiresAt.Sub(clock.Now()), time.Hour; got != want {
		t.Errorf("token lifetime %v, want %v", got, want)
	}

	code, b := do(t, srv.URL, call{method: "GET", path: "/api/me", header: bearer(admin.Token)})
	if code != http.StatusOK || !strings.Contains(string(b), `"admin":true`) {
		t.Errorf("me as admin: %d %s", code, b)
	}
	if code, _ := do(t, srv.URL, call{method: "GET", path: "/api/comments"}); code != http.StatusUnauthorized {
		t.Errorf("comments without a token: got %d, want 401", code)
	}
	code, b = do(t, srv.URL, call{method: "POST", path: "/api/comments", body: `{"text":"<b>hi</b>"}`, header: bearer(guest.Token)})
	if code != http.StatusCreated {
		t.Fatalf("post comment: %d %s", code, b)
	}
	var posted Comment
	json.Unmarshal(b, &posted)
	if posted.Text != "<b>hi</b>" || posted.Author != "guest" {
		t.Errorf("stored comment %+v, want the text as posted, by guest", posted)
	}

	deletePath := "/api/comments/" + jsonNumber(posted.ID) + "/delete"
	if code, _ := do(t, srv.URL, call{method: "POST", path: deletePath, header: bearer(guest.Token)}); code != http.StatusForbidden {
		t.Errorf("guest deletes: got %d, want 403", code)
	}
	if code, _ := do(t, srv.URL, call{method: "GET", path: "/api/admin/users", header: bearer(guest.Token)}); code != http.StatusForbidden {
		t.Errorf("guest lists users: got %d, want 403", code)
	}
	code, b = do(t, srv.URL, call{method: "GET", path: "/api/admin/users", header: bearer(admin.Token)})
	if code != http.StatusOK || !strings.Contains(string(b), "admin@example.test") || strings.Contains(string(b), "password") {
		t.Errorf("admin lists users: %d %s", code, b)
	}
	if code, _ := do(t, srv.URL, call{method: "POST", path: deletePath, header: bearer(admin.Token)}); code != http.StatusOK {
		t.Errorf("admin deletes: got %d, want 200", code)
	}
	if code, _ := do(t, srv.URL, call{method: "POST", path: deletePath, header: bearer(admin.Token)}); code != http.StatusNotFound {
		t.Errorf("delete twice: got %d, want 404", code)
	}
	if n := len(app.Comments()); n != 1 {
		t.Errorf("%d comments left, want the welcome comment only", n)
	}

	// A forged or altered token is refused; so is one signed with "none".
	parts := strings.Split(admin.Token, ".")
	for name, token := range map[string]string{
		"altered payload": parts[0] + "." + parts[1] + "x." + parts[2],
		"alg none":        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".",
		"garbage":         "not-a-token",
	} {
		if code, _ := do(t, srv.URL, call{method: "GET", path: "/api/me", header: bearer(token)}); code != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", name, code)
		}
	}

	// Nothing but expiry ends a token: this is the flaw the lab shows.
	clock.Add(59 * time.Minute)
	if code, _ := do(t, srv.URL, call{method: "GET", path: "/api/admin/users", header: bearer(admin.Token)}); code != http.StatusOK {
		t.Errorf("after 59 minutes: got %d, want 200", code)
	}
	clock.Add(time.Minute)
	if code, _ := do(t, srv.URL, call{method: "GET", path: "/api/admin/users", header: bearer(admin.Token)}); code != http.StatusUnauthorized {
		t.Errorf("after an hour: got %d, want 401", code)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestHostileBodies(t *testing.T) {
	_, srv := newServer(t, Config{Mode: ModeJWT, Users: testUsers})
	guest := login(t, srv.URL, "guest", "guest-password")
	h := bearer(guest.Token)
	form := bearer(guest.Token)
	form.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, tc := range []struct {
		name string
		c    call
		want int
	}{
		{"form body", call{method: "POST", path: "/api/comments", body: "text=hi", header: form}, http.StatusUnsupportedMediaType},
		{"unknown field", call{method: "POST", path: "/api/comments", body: `{"text":"hi","admin":true}`, header: h}, http.StatusBadRequest},
		{"two objects", call{method: "POST", path: "/api/comments", body: `{"text":"a"}{"text":"b"}`, header: h}, http.StatusBadRequest},
		{"empty text", call{method: "POST", path: "/api/comments", body: `{"text":"   "}`, header: h}, http.StatusBadRequest},
		{"too long", call{method: "POST", path: "/api/comments", body: `{"text":"` + strings.Repeat("a", 2001) + `"}`, header: h}, http.StatusBadRequest},
		{"too big", call{method: "POST", path: "/api/comments", body: `{"text":"` + strings.Repeat("a", 20000) + `"}`, header: h}, http.StatusRequestEntityTooLarge},
		{"guest deletes by a bad id", call{method: "POST", path: "/api/comments/-1/delete", header: h}, http.StatusForbidden},
		{"unknown route", call{method: "GET", path: "/api/nothing", header: h}, http.StatusNotFound},
		{"two bearer headers", call{method: "GET", path: "/api/me", header: http.Header{"Authorization": {"Bearer " + guest.Token, "Bearer " + guest.Token}}}, http.StatusUnauthorized},
		{"basic auth", call{method: "GET", path: "/api/me", header: http.Header{"Authorization": {"Basic YTpi"}}}, http.StatusUnauthorized},
	} {
		if code, b := do(t, srv.URL, tc.c); code != tc.want {
			t.Errorf("%s: got %d %s, want %d", tc.name, code, b, tc.want)
		}
	}
}

func TestCloakroomMode(t *testing.T) {
	var refuse atomic.Bool
	app, err := New(Config{Mode: ModeCloakroom, Users: testUsers, CheckGateway: func(r *http.Request) error {
		if refuse.Load() {
			return errors.New("no assertion")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.API())
	t.Cleanup(srv.Close)
	as := func(user, groups string) http.Header {
		h := http.Header{HeaderUser: {user}}
		if groups != "" {
			h.Set(HeaderGroups, groups)
		}
		return h
	}
	for _, tc := range []struct {
		name string
		c    call
		want int
	}{
		{"no identity", call{method: "GET", path: "/api/me"}, http.StatusUnauthorized},
		{"two users", call{method: "GET", path: "/api/me", header: http.Header{HeaderUser: {"admin", "guest"}}}, http.StatusUnauthorized},
		{"blank user", call{method: "GET", path: "/api/me", header: as("  ", "")}, http.StatusUnauthorized},
		{"no login route", call{method: "POST", path: "/api/login", body: `{"username":"admin","password":"admin-password"}`}, http.StatusNotFound},
		{"guest", call{method: "GET", path: "/api/admin/users", header: as("guest", "guest")}, http.StatusForbidden},
		{"admin", call{method: "GET", path: "/api/admin/users", header: as("admin", "users, admin")}, http.StatusOK},
		{"admin deletes", call{method: "POST", path: "/api/comments/1/delete", header: as("admin", "admin")}, http.StatusOK},
	} {
		if code, b := do(t, srv.URL, tc.c); code != tc.want {
			t.Errorf("%s: got %d %s, want %d", tc.name, code, b, tc.want)
		}
	}
	refuse.Store(true)
	if code, _ := do(t, srv.URL, call{method: "GET", path: "/api/me", header: as("admin", "admin")}); code != http.StatusUnauthorized {
		t.Errorf("headers without the gateway's assertion: got %d, want 401", code)
	}
}

func TestHandlerServesThePage(t *testing.T) {
	_, srv := newServer(t, Config{Mode: ModeJWT, Users: testUsers})
	for _, tc := range []struct {
		method, path string
		want         int
		contains     string
	}{
		{"GET", "/", 200, "DELIBERATELY VULNERABLE"},
		{"GET", "/some/client/route", 200, "DELIBERATELY VULNERABLE"},
		{"GET", "/app.js", 200, "innerHTML"},
		{"GET", "/config.json", 200, `"mode":"jwt"`},
		{"GET", "/missing.png", 404, ""},
		{"GET", "/auth/session", 404, "no gateway"},
		{"POST", "/", 405, ""},
	} {
		code, b := do(t, srv.URL, call{method: tc.method, path: tc.path})
		if code != tc.want || !bytes.Contains(b, []byte(tc.contains)) {
			t.Errorf("%s %s: got %d, want %d with %q", tc.method, tc.path, code, tc.want, tc.contains)
		}
	}
	// No inline script anywhere, so a strict CSP can hold.
	index, err := os.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if inline := regexp.MustCompile(`(?i)<script>|<script [^>]*>[^<]|\son[a-z]+=|style=`); inline.Match(index) {
		t.Errorf("index.html has inline script or style: %s", inline.Find(index))
	}
}

func TestWriteStatic(t *testing.T) {
	dir := t.TempDir()
	if err := WriteStatic(dir, PageConfig{Mode: ModeCloakroom, CSP: true}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if string(b) != `{"mode":"cloakroom","csp":true}` {
		t.Errorf("config.json = %s", b)
	}
	if err := WriteStatic(dir, PageConfig{Mode: "other"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown mode: got %v", err)
	}
}

func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(`{"text":"hello"}`))
	f.Add([]byte(`{"text":"a"} {"text":"b"}`))
	f.Add([]byte(`{"text":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in struct {
			Text string `json:"text"`
		}
		if err := decodeObject(bytes.NewReader(body), &in); err != nil {
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("error %v does not wrap errBadRequest", err)
			}
			return
		}
		if text, err := commentText(in.Text); err == nil {
			if n := utf8.RuneCountInString(text); n == 0 || n > maxCommentLength || text != strings.TrimSpace(text) {
				t.Fatalf("commentText accepted %q", text)
			}
		}
	})
}

func FuzzHeaders(f *testing.F) {
	f.Add("admin, users", "Bearer abc")
	f.Add(",,", "bearer   x ")
	f.Add("\xff", "Basic x")
	f.Fuzz(func(t *testing.T, groups, auth string) {
		if got, ok := parseGroups([]string{groups}); ok {
			for _, g := range got {
				if g == "" || g != strings.TrimSpace(g) || strings.Contains(g, ",") {
					t.Fatalf("parseGroups(%q) gave %q", groups, g)
				}
			}
		}
		if token, ok := bearerToken([]string{auth}); ok && (token == "" || token != strings.TrimSpace(token)) {
			t.Fatalf("bearerToken(%q) = %q", auth, token)
		}
		if user, ok := gatewayUser([]string{groups}); ok && (user == "" || !utf8.ValidString(user)) {
			t.Fatalf("gatewayUser(%q) = %q", groups, user)
		}
	})
}
