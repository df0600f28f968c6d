package vault_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// jwtBackend is an existing app of the shape the vault is for: its own
// users, a login and a register endpoint answering with an HS256 JWT in
// the body, "Authorization: Token <jwt>", an access_token query and form
// fallback, GET and PUT of the current user returning a fresh token, and
// 401 on an expired one. It knows nothing of cloakroom.
type jwtBackend struct {
	secret []byte
	skew   atomic.Int64 // seconds added to the backend's clock
	serial atomic.Int64 // makes every issued token distinct

	mu       sync.Mutex
	users    map[string]*backendUser // by email
	lastAuth string                  // the Authorization header of the last request
	lastURL  string                  // the last request's URL
	lastForm string                  // the last request's form body
	lastBody string                  // the last request's body, as it arrived
	tokens   []string                // every token issued

	// raw is the body /api/raw answers with, as JSON (see serveRaw).
	raw atomic.Pointer[string]

	// answering, when set, runs in a login once the password was checked,
	// before the answer is written: tests park the login there.
	answering atomic.Pointer[func()]
}

type backendUser struct {
	ID       int    `json:"id"`
	Email    string `json:"email"`
	Username string `json:"username"`
	Bio      string `json:"bio"`
	password string
}

const tokenLifetime = time.Hour

func newJWTBackend() *jwtBackend {
	return &jwtBackend{secret: []byte("backend-signing-secret"), users: map[string]*backendUser{}}
}

func (b *jwtBackend) now() time.Time {
	return time.Now().Add(time.Duration(b.skew.Load()) * time.Second)
}

func (b *jwtBackend) sign(u *backendUser) string {
	return b.signWithHeader(u, `{"alg":"HS256","typ":"JWT"}`)
}

// signWithHeader signs a token for u whose header is the JSON text given.
func (b *jwtBackend) signWithHeader(u *backendUser, headerJSON string) string {
	header := base64.RawURLEncoding.EncodeToString([]byte(headerJSON))
	claims, _ := json.Marshal(map[string]any{
		"id": u.ID, "username": u.Username, "exp": b.now().Add(tokenLifetime).Unix(), "jti": b.serial.Add(1),
	})
	payload := base64.RawURLEncoding.EncodeToString(claims)
	mac := hmac.New(sha256.New, b.secret)
	mac.Write([]byte(header + "." + payload))
	tok := header + "." + payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	b.mu.Lock()
	b.tokens = append(b.tokens, tok)
	b.mu.Unlock()
	return tok
}

// verify returns the user a token names, or nil.
func (b *jwtBackend) verify(tok string) *backendUser {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	mac := hmac.New(sha256.New, b.secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return nil
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		ID  int   `json:"id"`
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil || b.now().Unix() >= c.Exp {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.users {
		if u.ID == c.ID {
			return u
		}
	}
	return nil
}

// current finds the caller: Authorization "Token x", then the
// access_token query parameter, then the access_token form field.
func (b *jwtBackend) current(r *http.Request) *backendUser {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Token "); ok {
		return b.verify(tok)
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		return b.verify(tok)
	}
	if tok := r.PostFormValue("access_token"); tok != "" {
		return b.verify(tok)
	}
	return nil
}

func (b *jwtBackend) userJSON(u *backendUser) map[string]any {
	return map[string]any{"user": map[string]any{
		"email": u.Email, "username": u.Username, "bio": u.Bio, "token": b.sign(u),
	}}
}

func (b *jwtBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	b.mu.Lock()
	b.lastAuth, b.lastURL = r.Header.Get("Authorization"), r.URL.String()
	b.lastBody = string(body)
	b.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/users/login", b.login)
	mux.HandleFunc("POST /api/users", b.register)
	mux.HandleFunc("POST /api/users/{$}", b.register) // the same endpoint with a trailing slash
	mux.HandleFunc("POST /api/signup", func(w http.ResponseWriter, r *http.Request) {
		// A sign-up moved elsewhere, as a router's redirect does.
		http.Redirect(w, r, "/api/signup/new?from=old", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("GET /api/user", b.getUser)
	mux.HandleFunc("PUT /api/user", b.putUser)
	mux.HandleFunc("GET /api/articles", func(w http.ResponseWriter, r *http.Request) {
		viewer := "anonymous"
		if u := b.current(r); u != nil {
			viewer = u.Username
		}
		writeJSON(w, 200, map[string]any{"articles": []any{}, "viewer": viewer})
	})
	mux.HandleFunc("POST /api/form", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		b.mu.Lock()
		b.lastForm = r.PostForm.Encode()
		b.mu.Unlock()
		if u := b.current(r); u != nil {
			writeJSON(w, 200, map[string]any{"viewer": u.Username})
			return
		}
		writeJSON(w, 401, map[string]any{"errors": map[string]any{"body": []string{"unauthorized"}}})
	})
	// A debugging endpoint someone forgot: it echoes the caller's token in
	// a field nobody configured, in a header, and another JWT besides.
	mux.HandleFunc("GET /api/debug", func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Token ")
		w.Header().Set("X-Debug-Token", tok)
		writeJSON(w, 200, map[string]any{"debug": map[string]any{"seen": tok, "note": "signed " + tok},
			"service_jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZXJ2aWNlIn0.c2lnbmF0dXJl"})
	})
	mux.HandleFunc("GET /api/big", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"blob": strings.Repeat("x", 2<<20)})
	})
	mux.HandleFunc("GET /api/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "plain text eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln stays as it is")
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n\n", i)
			w.(http.Flusher).Flush()
		}
	})
	// The current user again, deflate-compressed, with the token in a
	// field only --vault-token-path names.
	mux.HandleFunc("GET /api/user/deflate", func(w http.ResponseWriter, r *http.Request) {
		u := b.current(r)
		if u == nil {
			writeJSON(w, 401, map[string]any{"errors": map[string]any{"body": []string{"unauthorized"}}})
			return
		}
		w.Header().Set("Content-Type", "application/vnd.api+json")
		w.Header().Set("Content-Encoding", "deflate")
		zw := zlib.NewWriter(w)
		json.NewEncoder(zw).Encode(map[string]any{"data": map[string]any{"jwt": b.sign(u)}})
		zw.Close()
	})
	mux.HandleFunc("GET /api/brotli", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "br")
		w.Write([]byte{0x0b, 0x02, 0x80})
	})
	mux.HandleFunc("/api/raw", b.serveRaw)
	mux.HandleFunc("POST /api/users/logout", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	b.frameworkRoutes(mux)
	mux.ServeHTTP(w, r)
}

// authenticate checks a login's e-mail and password and returns its
// user, or answers 422.
func (b *jwtBackend) authenticate(w http.ResponseWriter, r *http.Request) *backendUser {
	var req struct {
		User struct{ Email, Password string } `json:"user"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	b.mu.Lock()
	u := b.users[req.User.Email]
	b.mu.Unlock()
	if u == nil || u.password != req.User.Password {
		writeJSON(w, 422, map[string]any{"errors": map[string]any{"email or password": []string{"is invalid"}}})
		return nil
	}
	return u
}

func (b *jwtBackend) login(w http.ResponseWriter, r *http.Request) {
	u := b.authenticate(w, r)
	if u == nil {
		return
	}
	if f := b.answering.Load(); f != nil {
		(*f)()
	}
	body := b.userJSON(u)
	// The login answer is compressed, as many backends do.
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		json.NewEncoder(zw).Encode(body)
		zw.Close()
		return
	}
	writeJSON(w, 200, body)
}

func (b *jwtBackend) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User struct{ Email, Password, Username string } `json:"user"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	b.mu.Lock()
	if b.users[req.User.Email] != nil {
		b.mu.Unlock()
		writeJSON(w, 422, map[string]any{"errors": map[string]any{"email": []string{"has already been taken"}}})
		return
	}
	u := &backendUser{ID: len(b.users) + 1, Email: req.User.Email, Username: req.User.Username, password: req.User.Password}
	b.users[u.Email] = u
	b.mu.Unlock()
	writeJSON(w, 201, b.userJSON(u))
}

func (b *jwtBackend) getUser(w http.ResponseWriter, r *http.Request) {
	u := b.current(r)
	if u == nil {
		writeJSON(w, 401, map[string]any{"errors": map[string]any{"body": []string{"unauthorized"}}})
		return
	}
	writeJSON(w, 200, b.userJSON(u))
}

func (b *jwtBackend) putUser(w http.ResponseWriter, r *http.Request) {
	u := b.current(r)
	if u == nil {
		writeJSON(w, 401, map[string]any{"errors": map[string]any{"body": []string{"unauthorized"}}})
		return
	}
	var req struct {
		User struct{ Bio string } `json:"user"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	b.mu.Lock()
	u.Bio = req.User.Bio
	b.mu.Unlock()
	writeJSON(w, 200, b.userJSON(u))
}

func (b *jwtBackend) last() (auth, url, form string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastAuth, b.lastURL, b.lastForm
}

func (b *jwtBackend) issued() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.tokens...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
