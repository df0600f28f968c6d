package demoapp_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/demoapp"
)

type client struct {
	t   *testing.T
	url string
}

// do sends a request as user (no identity headers when user is "").
func (c client) do(method, path, user, groups, body string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.Header.Set(demoapp.HeaderUser, user)
	}
	if groups != "" {
		req.Header.Set(demoapp.HeaderGroups, groups)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func newClient(t *testing.T) client {
	srv := httptest.NewServer(demoapp.API())
	t.Cleanup(srv.Close)
	return client{t: t, url: srv.URL}
}

func TestRefusesRequestsWithoutIdentity(t *testing.T) {
	c := newClient(t)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/me", ""},
		{"GET", "/api/notes", ""},
		{"POST", "/api/notes", `{"text":"hi"}`},
		{"DELETE", "/api/notes/1", ""},
		{"GET", "/api/nowhere", ""},
	} {
		if code, body := c.do(tc.method, tc.path, "", "", tc.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s without identity: got %d %s, want 401", tc.method, tc.path, code, body)
		}
	}
	// Only the groups header is not an identity either.
	if code, _ := c.do("GET", "/api/me", "", "admin", ""); code != http.StatusUnauthorized {
		t.Errorf("groups without user: got %d, want 401", code)
	}
}

func TestRefusesAmbiguousUser(t *testing.T) {
	c := newClient(t)
	req, _ := http.NewRequest("GET", c.url+"/api/me", nil)
	req.Header.Add(demoapp.HeaderUser, "alice")
	req.Header.Add(demoapp.HeaderUser, "mallory")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("two X-Forwarded-User values: got %d, want 401", res.StatusCode)
	}
}

func TestMeTrustsGatewayHeaders(t *testing.T) {
	c := newClient(t)
	code, body := c.do("GET", "/api/me", "alice", "admin, user,admin", "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/me: %d %s", code, body)
	}
	var me demoapp.Me
	if err := json.Unmarshal(body, &me); err != nil {
		t.Fatal(err)
	}
	if me.User != "alice" || !me.Admin || strings.Join(me.Groups, ",") != "admin,user" {
		t.Errorf("got %+v, want alice, admin, groups admin,user", me)
	}
	_, body = c.do("GET", "/api/me", "bob", "", "")
	json.Unmarshal(body, &me)
	if me.User != "bob" || me.Admin || len(me.Groups) != 0 {
		t.Errorf("got %+v, want bob without groups", me)
	}
}

func TestNotesLifecycle(t *testing.T) {
	c := newClient(t)
	code, body := c.do("POST", "/api/notes", "bob", "user", `{"text":"  <script>alert(1)</script>  "}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	var note demoapp.Note
	json.Unmarshal(body, &note)
	if note.Author != "bob" || note.Text != "<script>alert(1)</script>" {
		t.Errorf("created %+v", note)
	}
	_, body = c.do("GET", "/api/notes", "carol", "", "")
	var notes []demoapp.Note
	json.Unmarshal(body, &notes)
	if len(notes) != 2 || notes[0].ID != note.ID {
		t.Fatalf("list: got %+v, want bob's note first, then the welcome note", notes)
	}
	del := "/api/notes/" + jsonNumber(note.ID)
	if code, _ := c.do("DELETE", del, "carol", "user", ""); code != http.StatusForbidden {
		t.Errorf("DELETE by another user: got %d, want 403", code)
	}
	if code, _ := c.do("DELETE", del, "bob", "", ""); code != http.StatusNoContent {
		t.Errorf("DELETE by the author: got %d, want 204", code)
	}
	if code, _ := c.do("DELETE", del, "bob", "", ""); code != http.StatusNotFound {
		t.Errorf("DELETE again: got %d, want 404", code)
	}
	// An admin may delete anyone's note (the welcome note here).
	if code, _ := c.do("DELETE", "/api/notes/"+jsonNumber(notes[1].ID), "alice", "admin", ""); code != http.StatusNoContent {
		t.Errorf("DELETE by an admin: got %d, want 204", code)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestHostileInputGets4xx(t *testing.T) {
	c := newClient(t)
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"empty text", "POST", "/api/notes", `{"text":"   "}`, 400},
		{"not JSON", "POST", "/api/notes", `text=hi`, 400},
		{"unknown field", "POST", "/api/notes", `{"text":"hi","author":"alice"}`, 400},
		{"two objects", "POST", "/api/notes", `{"text":"a"}{"text":"b"}`, 400},
		{"too long", "POST", "/api/notes", `{"text":"` + strings.Repeat("x", 1001) + `"}`, 400},
		{"huge body", "POST", "/api/notes", `{"text":"` + strings.Repeat("x", 20000) + `"}`, 413},
		{"bad id", "DELETE", "/api/notes/abc", "", 400},
		{"negative id", "DELETE", "/api/notes/-1", "", 400},
		{"unknown route", "GET", "/api/secret", "", 404},
		{"wrong method", "PUT", "/api/notes", `{"text":"x"}`, 405},
	} {
		if code, body := c.do(tc.method, tc.path, "bob", "", tc.body); code != tc.want {
			t.Errorf("%s: got %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	// A form post is refused: the API only takes JSON.
	req, _ := http.NewRequest("POST", c.url+"/api/notes", strings.NewReader(`{"text":"hi"}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set(demoapp.HeaderUser, "bob")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: got %d, want 415", res.StatusCode)
	}
}

func TestStaticHasTheSPA(t *testing.T) {
	static := demoapp.Static()
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	page := string(index)
	for _, want := range []string{`src="/app.js"`, `href="/style.css"`, `href="/auth/account"`, `id="logout"`, `href="/favicon.svg"`} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	if _, err := fs.ReadFile(static, "favicon.svg"); err != nil {
		t.Errorf("the linked favicon is missing: %v", err)
	}
	// No inline script or style: the page must work under a strict CSP.
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") || strings.Contains(page, "onclick") {
		t.Error("index.html has inline script or style")
	}
	js, err := fs.ReadFile(static, "app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/auth/session", "X-CSRF-Token", "/auth/logout", "textContent"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
	for _, bad := range []string{"innerHTML", "localStorage", "document.cookie", "eval("} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	// Web storage holds only the note being written (a draft, never a
	// token or a CSRF token): every use names the draft's key.
	uses := strings.Count(string(js), "sessionStorage.")
	draftUses := len(regexp.MustCompile(`sessionStorage\.(getItem|setItem|removeItem)\(DRAFT_KEY[,)]`).FindAllString(string(js), -1))
	if uses == 0 || uses != draftUses {
		t.Errorf("app.js uses sessionStorage %d times, %d of them for the draft", uses, draftUses)
	}
	if _, err := fs.Stat(static, "style.css"); err != nil {
		t.Error(err)
	}
}
