package conduit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

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

type env struct {
	t     *testing.T
	app   *App
	srv   *httptest.Server
	clock *fakeClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	app, err := New(Config{Secret: testSecret, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(app.API())
	t.Cleanup(srv.Close)
	return &env{t: t, app: app, srv: srv, clock: clock}
}

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body.
func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("answer %d %q is not a JSON object: %v", a.status, a.body, err)
	}
	return v
}

// errorsOf returns the messages of a RealWorld error answer.
func (a answer) errorsOf(t *testing.T) []string {
	t.Helper()
	var v struct {
		Errors struct {
			Body []string `json:"body"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil || len(v.Errors.Body) == 0 {
		t.Fatalf("answer %d %q is not a RealWorld error: %v", a.status, a.body, err)
	}
	return v.Errors.Body
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// call sends a request, with "Authorization: Token <token>" unless token
// is empty, and body as JSON unless it is a string, which is sent as is.
// It checks that every answer with a body is JSON.
func (e *env) call(client *http.Client, method, path, token string, body any) answer {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Token "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(b) > 0 && method != http.MethodHead {
		if ct := res.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			e.t.Errorf("%s %s: Content-Type %q, want application/json; charset=utf-8", method, path, ct)
		}
	}
	return answer{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) do(method, path, token string, body any) answer {
	e.t.Helper()
	return e.call(http.DefaultClient, method, path, token, body)
}

func (e *env) want(a answer, status int, what string) {
	e.t.Helper()
	if a.status != status {
		e.t.Fatalf("%s: got %d %s, want %d", what, a.status, a.body, status)
	}
}

type testUser struct {
	Email, Username, Bio, Image, Token string
}

func userOf(t *testing.T, a answer) testUser {
	t.Helper()
	var v struct {
		User *testUser `json:"user"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil || v.User == nil {
		t.Fatalf("answer %q holds no user: %v", a.body, err)
	}
	return *v.User
}

// register signs a user up at /api/users/ and returns its token.
func (e *env) register(name string) string {
	e.t.Helper()
	a := e.do("POST", "/api/users/", "", map[string]any{"user": map[string]string{
		"username": name, "email": name + "@example.test", "password": name + "-password"}})
	e.want(a, http.StatusCreated, "register "+name)
	return userOf(e.t, a).Token
}

// claimsOf decodes a token's payload, numbers kept as json.Number.
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Secret: []byte("short")},
		{Secret: testSecret[:31]},
		{Secret: testSecret, TokenLifetime: -time.Second},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v): got %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := New(Config{Secret: testSecret}); err != nil {
		t.Errorf("New with a 32-byte secret: %v", err)
	}
}

func TestRegisterRedirectsWithoutTrailingSlash(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"user": map[string]string{"username": "jake", "email": "jake@jake.jake", "password": "jakejake"}}

	a := e.call(noRedirects, "POST", "/api/users?x=1", "", body)
	e.want(a, http.StatusTemporaryRedirect, "POST /api/users")
	if loc := a.header.Get("Location"); loc != "/api/users/?x=1" {
		t.Errorf("Location %q, want /api/users/?x=1", loc)
	}
	if n := len(e.app.Requests()); n != 1 {
		t.Errorf("after the redirect: %d requests logged, want 1", n)
	}

	// A client that follows the 307 repeats the POST and its body.
	a = e.do("POST", "/api/users", "", body)
	e.want(a, http.StatusCreated, "POST /api/users, redirect followed")
	u := userOf(t, a)
	if u.Username != "jake" || u.Email != "jake@jake.jake" || u.Bio != "" || u.Image != "" || u.Token == "" {
		t.Errorf("registered user %+v", u)
	}
	reqs := e.app.Requests()
	if got := reqs[len(reqs)-1]; got.Method != "POST" || got.Path != "/api/users/" {
		t.Errorf("last request %+v, want POST /api/users/", got)
	}
	if got := e.call(noRedirects, "GET", "/api/users", "", nil); got.status != http.StatusTemporaryRedirect {
		t.Errorf("GET /api/users: got %d, want 307 (the redirect ignores the method)", got.status)
	}
}

func TestRegisterValidates(t *testing.T) {
	e := newEnv(t)
	e.register("jake")
	for _, c := range []struct {
		name string
		body any
		want string
	}{
		{"no user", map[string]any{}, "user is required"},
		{"blank", map[string]any{"user": map[string]string{}}, "username can't be blank"},
		{"bad email", map[string]any{"user": map[string]string{"username": "x", "email": "nope", "password": "p"}}, "email is invalid"},
		{"no password", map[string]any{"user": map[string]string{"username": "x", "email": "x@x.x"}}, "password can't be blank"},
		{"spaces", map[string]any{"user": map[string]string{"username": "a b", "email": "x@x.x", "password": "p"}}, "without spaces"},
		{"taken username", map[string]any{"user": map[string]string{"username": "JAKE", "email": "other@x.x", "password": "p"}}, "username has already been taken"},
		{"taken email", map[string]any{"user": map[string]string{"username": "other", "email": "Jake@Example.test", "password": "p"}}, "email has already been taken"},
	} {
		a := e.do("POST", "/api/users/", "", c.body)
		e.want(a, http.StatusUnprocessableEntity, c.name)
		if msgs := strings.Join(a.errorsOf(t), "; "); !strings.Contains(msgs, c.want) {
			t.Errorf("%s: errors %q, want %q", c.name, msgs, c.want)
		}
	}
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	first := e.register("jake")
	e.clock.Add(time.Minute)

	a := e.do("POST", "/api/users/login", "", map[string]any{"user": map[string]string{"email": "JAKE@example.test ", "password": "jake-password"}})
	e.want(a, http.StatusOK, "login")
	u := userOf(t, a)
	if u.Username != "jake" || u.Token == "" || u.Token == first {
		t.Errorf("login answered %+v, want jake with a fresh token", u)
	}
	c := claimsOf(t, u.Token)
	if id, ok := c["id"].(json.Number); !ok || id.String() != "1" {
		t.Errorf("claim id %#v, want the JSON number 1", c["id"])
	}
	if c["username"] != "jake" {
		t.Errorf("claim username %#v", c["username"])
	}
	iat, _ := c["iat"].(json.Number).Int64()
	exp, _ := c["exp"].(json.Number).Int64()
	if want := e.clock.Now().Unix(); iat != want || exp != want+3600 {
		t.Errorf("iat %d, exp %d; want %d and %d", iat, exp, want, want+3600)
	}

	for name, body := range map[string]any{
		"wrong password": map[string]any{"user": map[string]string{"email": "jake@example.test", "password": "nope"}},
		"unknown email":  map[string]any{"user": map[string]string{"email": "finn@example.test", "password": "jake-password"}},
		"no password":    map[string]any{"user": map[string]string{"email": "jake@example.test"}},
		"no user":        map[string]any{},
	} {
		a := e.do("POST", "/api/users/login", "", body)
		e.want(a, http.StatusUnprocessableEntity, name)
		a.errorsOf(t)
	}
}

func TestCurrentUserEchoesTheToken(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")
	a := e.do("GET", "/api/user", token, nil)
	e.want(a, http.StatusOK, "GET /api/user")
	if u := userOf(t, a); u.Token != token || u.Username != "jake" {
		t.Errorf("GET /api/user answered %+v, want the request's own token", u)
	}
	// Also a token from an earlier login, still valid: the echo is the
	// request's token, not the latest one.
	e.clock.Add(time.Second)
	e.want(e.do("POST", "/api/users/login", "", map[string]any{"user": map[string]string{"email": "jake@example.test", "password": "jake-password"}}), 200, "login")
	if u := userOf(t, e.do("GET", "/api/user", token, nil)); u.Token != token {
		t.Errorf("echo %q, want the older token the request carried", u.Token)
	}
}

func TestBadTokens(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")
	parts := strings.Split(token, ".")
	other, _ := New(Config{Secret: bytes.Repeat([]byte("x"), 32), Now: e.clock.Now})
	foreign := other.issue(&user{id: 1, username: "jake"})
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	unknownUser := sign(testSecret, claims{ID: 99, Username: "ghost", Iat: e.clock.Now().Unix(), Exp: e.clock.Now().Add(time.Hour).Unix()})
	stringID := base64.RawURLEncoding.EncodeToString([]byte(`{"id":"1","username":"jake","exp":9999999999}`))
	stringIDToken := jwtHeader + "." + stringID + "." + base64.RawURLEncoding.EncodeToString(mac(testSecret, jwtHeader+"."+stringID))

	for name, header := range map[string]string{
		"none":           "",
		"bearer scheme":  "Bearer " + token,
		"no scheme":      token,
		"empty token":    "Token ",
		"garbage":        "Token not-a-jwt",
		"tampered":       "Token " + parts[0] + "." + parts[1] + "x." + parts[2],
		"bad signature":  "Token " + parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2] + "AA",
		"other secret":   "Token " + foreign,
		"alg none":       "Token " + none,
		"unknown user":   "Token " + unknownUser,
		"string id":      "Token " + stringIDToken,
		"placeholder":    "Token cloakroom-placeholder",
		"two tokens":     "Token " + token + ", Token " + token,
		"oversize token": "Token " + strings.Repeat("a", maxTokenBytes+1),
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/user", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: got %d (WWW-Authenticate %q), want 401 with a challenge", name, res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	}
	// Two Authorization headers are refused too.
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/user", nil)
	req.Header.Add("Authorization", "Token "+token)
	req.Header.Add("Authorization", "Token "+token)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 401 {
		t.Errorf("two headers: %v %v, want 401", res, err)
	}
	// The scheme's case does not matter.
	req, _ = http.NewRequest("GET", e.srv.URL+"/api/user", nil)
	req.Header.Set("Authorization", "token "+token)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Errorf("lower-case scheme: %v %v, want 200", res, err)
	}
}

func TestTokenExpires(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")
	e.clock.Add(time.Hour - time.Second)
	e.want(e.do("GET", "/api/user", token, nil), http.StatusOK, "just before exp")
	e.clock.Add(time.Second)
	a := e.do("GET", "/api/user", token, nil)
	e.want(a, http.StatusUnauthorized, "at exp")
	a.errorsOf(t)
	// Public reads refuse an expired token too, like express-jwt.
	e.want(e.do("GET", "/api/articles", token, nil), http.StatusUnauthorized, "list with an expired token")
	e.want(e.do("GET", "/api/articles", "", nil), http.StatusOK, "list without a token")

	short, _ := New(Config{Secret: testSecret, TokenLifetime: time.Minute, Now: e.clock.Now})
	c := claimsOf(t, short.issue(&user{id: 1, username: "jake"}))
	iat, _ := c["iat"].(json.Number).Int64()
	exp, _ := c["exp"].(json.Number).Int64()
	if exp-iat != 60 {
		t.Errorf("TokenLifetime 1m: exp-iat = %d", exp-iat)
	}
}

func TestUpdateUser(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")
	e.register("finn")
	e.clock.Add(time.Second)

	a := e.do("PUT", "/api/user", token, map[string]any{"user": map[string]any{"bio": "I work at statefarm", "image": "https://i.example/j.png", "token": "ignored"}})
	e.want(a, http.StatusOK, "PUT bio")
	u := userOf(t, a)
	if u.Bio != "I work at statefarm" || u.Image != "https://i.example/j.png" || u.Username != "jake" {
		t.Errorf("updated user %+v", u)
	}
	if u.Token == "" || u.Token == token {
		t.Errorf("PUT /api/user token %q, want a fresh one", u.Token)
	}
	if got := userOf(t, e.do("GET", "/api/user", u.Token, nil)); got.Bio != "I work at statefarm" {
		t.Errorf("bio after update %q", got.Bio)
	}
	// The old token still works: nothing on the server remembers tokens.
	e.want(e.do("GET", "/api/user", token, nil), http.StatusOK, "old token after update")

	a = e.do("PUT", "/api/user", token, map[string]any{"user": map[string]any{"username": "Finn"}})
	e.want(a, http.StatusUnprocessableEntity, "rename to a taken username")
	a = e.do("PUT", "/api/user", token, map[string]any{"user": map[string]any{"username": "jacob", "email": "jacob@example.test", "password": "new-password"}})
	e.want(a, http.StatusOK, "rename")
	if c := claimsOf(t, userOf(t, a).Token); c["username"] != "jacob" {
		t.Errorf("token after rename names %v", c["username"])
	}
	e.want(e.do("POST", "/api/users/login", "", map[string]any{"user": map[string]string{"email": "jacob@example.test", "password": "new-password"}}), http.StatusOK, "login after update")
	e.want(e.do("POST", "/api/users/login", "", map[string]any{"user": map[string]string{"email": "jake@example.test", "password": "jake-password"}}), http.StatusUnprocessableEntity, "login with the old e-mail")
	e.want(e.do("POST", "/api/users/", "", map[string]any{"user": map[string]string{"username": "jake", "email": "jake@example.test", "password": "p"}}), http.StatusCreated, "the old name is free again")

	e.want(e.do("PUT", "/api/user", "", map[string]any{"user": map[string]any{"bio": "x"}}), http.StatusUnauthorized, "PUT without a token")
	e.want(e.do("PUT", "/api/user", token, map[string]any{}), http.StatusUnprocessableEntity, "PUT without user")
	e.want(e.do("PUT", "/api/user", token, map[string]any{"user": map[string]any{"email": "bad"}}), http.StatusUnprocessableEntity, "PUT a bad e-mail")
}

type testArticle struct {
	Slug           string   `json:"slug"`
	Title          string   `json:"title"`
	Description    string   `json:"description"`
	Body           string   `json:"body"`
	TagList        []string `json:"tagList"`
	CreatedAt      string   `json:"createdAt"`
	UpdatedAt      string   `json:"updatedAt"`
	Favorited      bool     `json:"favorited"`
	FavoritesCount int      `json:"favoritesCount"`
	Author         struct {
		Username  string `json:"username"`
		Bio       string `json:"bio"`
		Image     string `json:"image"`
		Following bool   `json:"following"`
	} `json:"author"`
}

func articleOf(t *testing.T, a answer) testArticle {
	t.Helper()
	var v struct {
		Article *testArticle `json:"article"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil || v.Article == nil {
		t.Fatalf("answer %q holds no article: %v", a.body, err)
	}
	return *v.Article
}

func (e *env) list(path, token string) ([]testArticle, int) {
	e.t.Helper()
	a := e.do("GET", path, token, nil)
	e.want(a, http.StatusOK, "GET "+path)
	var v struct {
		Articles      []testArticle `json:"articles"`
		ArticlesCount *int          `json:"articlesCount"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil || v.Articles == nil || v.ArticlesCount == nil {
		e.t.Fatalf("GET %s: %q is not an article list: %v", path, a.body, err)
	}
	return v.Articles, *v.ArticlesCount
}

func (e *env) publish(token, title string) testArticle {
	e.t.Helper()
	a := e.do("POST", "/api/articles", token, map[string]any{"article": map[string]any{
		"title": title, "description": "about " + title, "body": "all about " + title, "tagList": []string{"dragons", "training"}}})
	e.want(a, http.StatusCreated, "publish "+title)
	return articleOf(e.t, a)
}

func TestArticles(t *testing.T) {
	e := newEnv(t)
	jake := e.register("jake")
	finn := e.register("finn")

	if articles, n := e.list("/api/articles", ""); len(articles) != 0 || n != 0 {
		t.Fatalf("empty app lists %d articles (count %d)", len(articles), n)
	}
	first := e.publish(jake, "How to train your dragon?")
	e.clock.Add(time.Minute)
	second := e.publish(jake, "How to train your dragon?")
	e.clock.Add(time.Minute)
	third := e.publish(finn, "  Ça va, ünicode!  ")

	if first.Slug != "how-to-train-your-dragon-1" || second.Slug != "how-to-train-your-dragon-2" || third.Slug != "a-va-nicode-3" {
		t.Errorf("slugs %q %q %q", first.Slug, second.Slug, third.Slug)
	}
	if first.Title != "How to train your dragon?" || first.Description != "about How to train your dragon?" ||
		first.Body != "all about How to train your dragon?" || len(first.TagList) != 2 || first.Author.Username != "jake" ||
		first.Favorited || first.FavoritesCount != 0 || first.Author.Following {
		t.Errorf("first article %+v", first)
	}
	if first.CreatedAt != "2026-05-01T12:00:00.000Z" || first.UpdatedAt != first.CreatedAt {
		t.Errorf("createdAt %q, updatedAt %q", first.CreatedAt, first.UpdatedAt)
	}
	if third.Title != "Ça va, ünicode!" {
		t.Errorf("title not trimmed: %q", third.Title)
	}

	articles, n := e.list("/api/articles", "")
	if n != 3 || len(articles) != 3 || articles[0].Slug != third.Slug || articles[2].Slug != first.Slug {
		t.Errorf("list: count %d, %+v; want newest first", n, articles)
	}
	if articles, n := e.list("/api/articles?limit=1&offset=1", ""); n != 3 || len(articles) != 1 || articles[0].Slug != second.Slug {
		t.Errorf("limit=1 offset=1: count %d, %+v", n, articles)
	}
	if articles, n := e.list("/api/articles?author=finn", ""); n != 1 || articles[0].Slug != third.Slug {
		t.Errorf("author=finn: count %d, %+v", n, articles)
	}
	if _, n := e.list("/api/articles?tag=dragons", ""); n != 3 {
		t.Errorf("tag=dragons: count %d", n)
	}
	e.want(e.do("GET", "/api/articles?limit=-1", "", nil), http.StatusUnprocessableEntity, "negative limit")

	// Favorites: the count is public, "favorited" is the viewer's.
	a := e.do("POST", "/api/articles/"+first.Slug+"/favorite", finn, nil)
	e.want(a, http.StatusOK, "favorite")
	if got := articleOf(t, a); !got.Favorited || got.FavoritesCount != 1 {
		t.Errorf("after favorite: %+v", got)
	}
	e.want(e.do("POST", "/api/articles/"+first.Slug+"/favorite", finn, nil), http.StatusOK, "favorite twice")
	for token, want := range map[string]bool{finn: true, jake: false, "": false} {
		articles, _ := e.list("/api/articles", token)
		if articles[2].Favorited != want || articles[2].FavoritesCount != 1 {
			t.Errorf("list as %q: favorited %v count %d, want %v 1", token, articles[2].Favorited, articles[2].FavoritesCount, want)
		}
		got := articleOf(t, e.do("GET", "/api/articles/"+first.Slug, token, nil))
		if got.Favorited != want {
			t.Errorf("get as %q: favorited %v, want %v", token, got.Favorited, want)
		}
	}
	if articles, n := e.list("/api/articles?favorited=finn", ""); n != 1 || articles[0].Slug != first.Slug {
		t.Errorf("favorited=finn: count %d, %+v", n, articles)
	}
	a = e.do("DELETE", "/api/articles/"+first.Slug+"/favorite", finn, nil)
	e.want(a, http.StatusOK, "unfavorite")
	if got := articleOf(t, a); got.Favorited || got.FavoritesCount != 0 {
		t.Errorf("after unfavorite: %+v", got)
	}
	e.want(e.do("POST", "/api/articles/"+first.Slug+"/favorite", "", nil), http.StatusUnauthorized, "favorite without a token")
	e.want(e.do("POST", "/api/articles/nope/favorite", finn, nil), http.StatusNotFound, "favorite an unknown article")

	// Author profiles follow the author's updates.
	e.want(e.do("PUT", "/api/user", jake, map[string]any{"user": map[string]any{"bio": "dragon trainer"}}), http.StatusOK, "bio")
	if got := articleOf(t, e.do("GET", "/api/articles/"+first.Slug, "", nil)); got.Author.Bio != "dragon trainer" {
		t.Errorf("author bio %q", got.Author.Bio)
	}

	// Delete: author only.
	a = e.do("DELETE", "/api/articles/"+first.Slug, finn, nil)
	e.want(a, http.StatusForbidden, "delete by another user")
	a.errorsOf(t)
	e.want(e.do("DELETE", "/api/articles/"+first.Slug, "", nil), http.StatusUnauthorized, "delete without a token")
	a = e.do("DELETE", "/api/articles/"+first.Slug, jake, nil)
	e.want(a, http.StatusNoContent, "delete by the author")
	if len(a.body) != 0 {
		t.Errorf("204 with a body %q", a.body)
	}
	e.want(e.do("GET", "/api/articles/"+first.Slug, "", nil), http.StatusNotFound, "get a deleted article")
	e.want(e.do("DELETE", "/api/articles/"+first.Slug, jake, nil), http.StatusNotFound, "delete twice")
	if _, n := e.list("/api/articles", ""); n != 2 {
		t.Errorf("after delete: count %d, want 2", n)
	}
	// A new article with the same title gets a new slug.
	if got := e.publish(jake, "How to train your dragon?"); got.Slug != "how-to-train-your-dragon-4" {
		t.Errorf("slug after delete %q", got.Slug)
	}
}

func TestCreateArticleValidates(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")
	e.want(e.do("POST", "/api/articles", "", map[string]any{"article": map[string]any{"title": "t", "body": "b"}}), http.StatusUnauthorized, "no token")
	for name, body := range map[string]any{
		"no article": map[string]any{},
		"no title":   map[string]any{"article": map[string]any{"body": "b"}},
		"no body":    map[string]any{"article": map[string]any{"title": "t"}},
		"long title": map[string]any{"article": map[string]any{"title": strings.Repeat("t", maxTitleRunes+1), "body": "b"}},
		"many tags":  map[string]any{"article": map[string]any{"title": "t", "body": "b", "tagList": strings.Split("a b c d e f g h i j k", " ")}},
		"tag type":   map[string]any{"article": map[string]any{"title": "t", "body": "b", "tagList": "a"}},
	} {
		a := e.do("POST", "/api/articles", token, body)
		e.want(a, http.StatusUnprocessableEntity, name)
		a.errorsOf(t)
	}
	// The description and the tags are optional.
	a := e.do("POST", "/api/articles", token, map[string]any{"article": map[string]any{"title": "!!!", "body": "b"}})
	e.want(a, http.StatusCreated, "minimal article")
	if got := articleOf(t, a); got.Slug != "article-1" || got.TagList == nil || got.Description != "" {
		t.Errorf("minimal article %+v", got)
	}
}

func TestBodies(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")

	big := `{"article":{"title":"t","body":"` + strings.Repeat("x", MaxBodyBytes) + `"}}`
	a := e.do("POST", "/api/articles", token, big)
	e.want(a, http.StatusRequestEntityTooLarge, "64 KiB + 1 body")
	a.errorsOf(t)
	justFits := `{"article":{"title":"t","body":"` + strings.Repeat("x", MaxBodyBytes-len(`{"article":{"title":"t","body":""}}`)) + `"}}`
	e.want(e.do("POST", "/api/articles", token, justFits), http.StatusCreated, "a 64 KiB body")

	for name, body := range map[string]string{
		"empty":       "",
		"not JSON":    "user=jake",
		"truncated":   `{"user":{"email":"jake@example.test"`,
		"trailing":    `{"user":{}} {"user":{}}`,
		"wrong types": `{"user":{"email":1,"password":2}}`,
		"array":       `[1,2]`,
	} {
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/users/login", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"errors":{"body":[`) {
			t.Errorf("%s: got %d %s, want 422 with a RealWorld error", name, res.StatusCode, b)
		}
	}
	// Unknown fields are ignored, as most apps do.
	e.want(e.do("POST", "/api/users/login", "", `{"user":{"email":"jake@example.test","password":"jake-password","remember":true}}`), http.StatusOK, "unknown field")

	req, _ := http.NewRequest("POST", e.srv.URL+"/api/users/login", strings.NewReader(`{"user":{"email":"jake@example.test","password":"jake-password"}}`))
	req.Header.Set("Content-Type", "text/plain")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: got %d, want 415", res.StatusCode)
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/nope"}, {"GET", "/"}, {"GET", "/index.html"}, {"GET", "/api/articles/a/b"},
	} {
		a := e.do(c.method, c.path, "", nil)
		e.want(a, http.StatusNotFound, c.method+" "+c.path)
		a.errorsOf(t)
	}
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/api/user", "GET, HEAD, PUT"},
		{"GET", "/api/users/login", "POST"},
		{"PATCH", "/api/articles/x", "GET, HEAD, DELETE"},
	} {
		a := e.do(c.method, c.path, "", nil)
		e.want(a, http.StatusMethodNotAllowed, c.method+" "+c.path)
		if got := a.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

func TestSeenCountsTokens(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")                                                                                                                     // without
	e.do("GET", "/api/user", token, nil)                                                                                                            // with
	e.do("GET", "/api/articles", token, nil)                                                                                                        // with
	e.do("GET", "/api/articles", "", nil)                                                                                                           // without
	e.do("GET", "/api/articles", "placeholder", nil)                                                                                                // without: not a valid token
	e.do("POST", "/api/users/login", "bogus", map[string]any{"user": map[string]string{"email": "jake@example.test", "password": "jake-password"}}) // without

	if with, without := e.app.Seen(); with != 2 || without != 4 {
		t.Errorf("Seen() = %d, %d; want 2, 4", with, without)
	}
	reqs := e.app.Requests()
	want := []Request{
		{"POST", "/api/users/", false, 0},
		{"GET", "/api/user", true, 1},
		{"GET", "/api/articles", true, 1},
		{"GET", "/api/articles", false, 0},
		{"GET", "/api/articles", true, 0},
		{"POST", "/api/users/login", true, 0},
	}
	if fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Errorf("Requests() = %v\nwant %v", reqs, want)
	}
	for range MaxLoggedRequests {
		e.app.record(httptest.NewRequest("GET", "/api/articles", nil), identity{})
	}
	if reqs := e.app.Requests(); len(reqs) != MaxLoggedRequests || reqs[0].Path != "/api/articles" {
		t.Errorf("log holds %d requests, first %+v; want the last %d", len(reqs), reqs[0], MaxLoggedRequests)
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("user%d", i)
			a := e.do("POST", "/api/users/", "", map[string]any{"user": map[string]string{
				"username": name, "email": name + "@example.test", "password": "p"}})
			if a.status != http.StatusCreated {
				t.Errorf("register %s: %d %s", name, a.status, a.body)
				return
			}
			token := userOf(t, a).Token
			for j := range 5 {
				a := e.do("POST", "/api/articles", token, map[string]any{"article": map[string]any{"title": fmt.Sprintf("%s %d", name, j), "body": "b"}})
				if a.status != http.StatusCreated {
					t.Errorf("publish: %d %s", a.status, a.body)
					return
				}
				slug := articleOf(t, a).Slug
				e.do("POST", "/api/articles/"+slug+"/favorite", token, nil)
				e.do("GET", "/api/articles", token, nil)
				e.do("PUT", "/api/user", token, map[string]any{"user": map[string]any{"bio": slug}})
			}
		})
	}
	wg.Wait()
	articles, n := e.list("/api/articles?limit=100", "")
	if n != 40 || len(articles) != 40 {
		t.Fatalf("%d articles (count %d), want 40", len(articles), n)
	}
	slugs := map[string]bool{}
	for _, a := range articles {
		if slugs[a.Slug] || a.FavoritesCount != 1 {
			t.Errorf("article %+v: duplicate slug or favorites count", a)
		}
		slugs[a.Slug] = true
	}
}

func TestTokensNeverLogged(t *testing.T) {
	e := newEnv(t)
	token := e.register("jake")
	e.do("GET", "/api/user?token="+token, token, nil)
	if s := fmt.Sprintf("%+v", e.app.Requests()); strings.Contains(s, token) || strings.Contains(s, "eyJ") {
		t.Errorf("the request log holds token material: %s", s)
	}
}

func TestSPA(t *testing.T) {
	files := SPA()
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	js, err := fs.ReadFile(files, "app.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadFile(files, "app.css"); err != nil {
		t.Fatal(err)
	}
	page := string(index)
	for _, id := range []string{"email", "password", "login", "reg-username", "reg-email", "reg-password", "register",
		"who", "logout", "title", "body", "publish", "bio", "save-bio", "articles", "status"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("index.html has no #%s", id)
		}
	}
	// Nothing the CSP "script-src 'self'; style-src 'self'" would block.
	for _, re := range []string{`<script(\s[^>]*)?>[^<]`, `\sstyle=`, `<style`, `\son[a-z]+=`, `javascript:`} {
		if regexp.MustCompile(re).MatchString(page) {
			t.Errorf("index.html matches %s: inline script or style", re)
		}
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, `src="/app.js"`) {
			t.Errorf("script tag %s does not load /app.js", tag)
		}
	}
	src := string(js)
	for _, want := range []string{
		"`Token ${token}`", `localStorage.getItem(TOKEN_KEY)`, `const TOKEN_KEY = "jwtToken"`,
		`api("POST", "/users",`, `api("POST", "/users/login"`, `api("PUT", "/user"`, `api("GET", "/user")`,
		`"signed-in:"`, `"signed-out"`, `"published:"`, `"saved"`, `"error:"`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "X-CSRF", "Origin"} {
		if strings.Contains(src, banned) {
			t.Errorf("app.js uses %s", banned)
		}
	}
	// Logout removes the token and does nothing else with the server.
	body := regexp.MustCompile(`(?s)async function logout\(\) \{(.*?)\n\}`).FindStringSubmatch(src)
	if body == nil || !strings.Contains(body[1], `localStorage.removeItem(TOKEN_KEY)`) ||
		strings.Contains(body[1], "fetch") || strings.Contains(body[1], `api("POST"`) || strings.Contains(body[1], `api("DELETE"`) {
		t.Errorf("logout is not storage-only: %q", body)
	}
}

func TestWriteSPA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dist")
	if err := WriteSPA(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := fs.ReadFile(SPA(), name)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the embedded file", name)
		}
	}
	if err := WriteSPA(dir); err != nil {
		t.Errorf("second WriteSPA into the same folder: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if err := WriteSPA(file); err == nil {
		t.Error("WriteSPA into a file: no error")
	}
}
