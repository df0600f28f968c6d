package guestbook

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Mode says how the API learns who the user is.
type Mode string

// The two modes of the lab.
const (
	// ModeJWT: the API issues and checks bearer tokens itself.
	ModeJWT Mode = "jwt"
	// ModeCloakroom: the API trusts the cloakroom gateway's headers.
	ModeCloakroom Mode = "cloakroom"
)

// Identity headers set by the cloakroom gateway's proxy, which strips any
// a client sends.
const (
	HeaderUser   = "X-Forwarded-User"
	HeaderEmail  = "X-Forwarded-Email"
	HeaderGroups = "X-Forwarded-Groups"
)

// AdminRole is the role (the gateway's group) that may delete any comment
// and list the users.
const AdminRole = "admin"

// DefaultTokenTTL is how long a ModeJWT token lives: one hour, a common
// choice for access tokens kept in the browser.
const DefaultTokenTTL = time.Hour

// Limits on what the API accepts.
const (
	maxCommentLength = 2000     // characters of comment text
	maxComments      = 500      // the oldest comments are dropped beyond this
	maxBodyBytes     = 16 << 10 // request body
	maxNameLength    = 256      // bytes of a user name, from a form or a header
	maxGroupsLength  = 4 << 10  // bytes of X-Forwarded-Groups
	minKeyLength     = 32       // bytes of the HS256 key
)

// ErrInvalidConfig wraps every problem [New] finds in a Config.
var ErrInvalidConfig = errors.New("guestbook: invalid configuration")

// errBadRequest marks request bodies the API refuses with 400.
var errBadRequest = errors.New("guestbook: bad request")

// User is an entry of the guestbook's user directory.
type User struct {
	Name string
	// Password signs the user in, in ModeJWT only; in ModeCloakroom the
	// gateway checks passwords and this field is ignored.
	Password string
	Email    string
	Roles    []string
}

// Config configures an [App].
type Config struct {
	// Mode is ModeJWT or ModeCloakroom. Required.
	Mode Mode
	// Users is the directory listed by GET /api/admin/users. In ModeJWT
	// the API also signs these users in.
	Users []User
	// SigningKey is the ModeJWT HS256 key, at least 32 bytes. Default: 32
	// random bytes, so tokens die with the process.
	SigningKey []byte
	// TokenTTL is the lifetime of a ModeJWT token. Default one hour.
	TokenTTL time.Duration
	// CheckGateway, in ModeCloakroom, vets each request before its
	// identity headers are believed; an error answers 401. Default none:
	// the headers are trusted as they come, which is safe only when no one
	// but the gateway can reach the API.
	CheckGateway func(*http.Request) error
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Comment is one guestbook entry. Text is stored and returned exactly as
// posted; the page renders it unsafely.
type Comment struct {
	ID        int64     `json:"id"`
	Author    string    `json:"author"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// Me is the answer to GET /api/me.
type Me struct {
	User  string   `json:"user"`
	Roles []string `json:"roles"`
	Admin bool     `json:"admin"`
}

// DirectoryEntry is one user in the answer to GET /api/admin/users.
type DirectoryEntry struct {
	Name  string   `json:"name"`
	Email string   `json:"email,omitempty"`
	Roles []string `json:"roles"`
}

// App is the guestbook: its comments, its users and its HTTP handlers.
type App struct {
	cfg    Config
	users  map[string]userEntry
	tokens *tokenIssuer // ModeJWT only

	mu       sync.Mutex
	nextID   int64
	comments []Comment
}

type userEntry struct {
	User
	passwordHash [sha256.Size]byte
}

// New checks cfg and returns an App holding one welcome comment.
func New(cfg Config) (*App, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if cfg.Mode != ModeJWT && cfg.Mode != ModeCloakroom {
		bad("Mode must be %q or %q (got %q)", ModeJWT, ModeCloakroom, cfg.Mode)
	}
	if cfg.TokenTTL < 0 {
		bad("TokenTTL must not be negative (got %v)", cfg.TokenTTL)
	}
	if cfg.SigningKey != nil && len(cfg.SigningKey) < minKeyLength {
		bad("SigningKey must hold at least %d bytes (got %d)", minKeyLength, len(cfg.SigningKey))
	}
	users := make(map[string]userEntry, len(cfg.Users))
	for _, u := range cfg.Users {
		switch {
		case u.Name == "" || len(u.Name) > maxNameLength:
			bad("user name %q must be 1 to %d bytes", u.Name, maxNameLength)
		case users[u.Name].Name != "":
			bad("user %q appears twice", u.Name)
		case cfg.Mode == ModeJWT && u.Password == "":
			bad("user %q needs a password in ModeJWT", u.Name)
		}
		users[u.Name] = userEntry{User: u, passwordHash: sha256.Sum256([]byte(u.Password))}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	a := &App{cfg: cfg, users: users}
	if cfg.Mode == ModeJWT {
		key := cfg.SigningKey
		if key == nil {
			key = make([]byte, minKeyLength)
			rand.Read(key)
		}
		a.tokens = newTokenIssuer(key, cfg.TokenTTL, cfg.Now)
	}
	a.add("admin", "Welcome to the guestbook! Leave a comment below.")
	return a, nil
}

// Mode returns the app's mode.
func (a *App) Mode() Mode { return a.cfg.Mode }

// Comments returns a copy of the comments, oldest first.
func (a *App) Comments() []Comment {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.comments)
}

// API returns the JSON API, which serves only paths under /api/.
func (a *App) API() http.Handler {
	mux := http.NewServeMux()
	if a.cfg.Mode == ModeJWT {
		mux.HandleFunc("POST /api/login", a.login)
	}
	mux.Handle("GET /api/me", a.authenticated(a.me))
	mux.Handle("GET /api/comments", a.authenticated(a.list))
	mux.Handle("POST /api/comments", a.authenticated(a.create))
	mux.Handle("POST /api/comments/{id}/delete", a.authenticated(a.adminOnly(a.remove)))
	mux.Handle("GET /api/admin/users", a.authenticated(a.adminOnly(a.directory)))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API route")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

type identity struct {
	user  string
	roles []string
}

func (id identity) admin() bool { return slices.Contains(id.roles, AdminRole) }

type identityKey struct{}

func identityOf(ctx context.Context) identity {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id
}

// authenticated answers 401 unless the request names a user the mode's way.
func (a *App) authenticated(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			id  identity
			err error
		)
		if a.cfg.Mode == ModeJWT {
			id, err = a.bearerIdentity(r)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="guestbook"`)
			}
		} else {
			id, err = a.gatewayIdentity(r)
		}
		if err != nil {
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

func (a *App) bearerIdentity(r *http.Request) (identity, error) {
	token, ok := bearerToken(r.Header.Values("Authorization"))
	if !ok {
		return identity{}, errors.New("sign in first: send Authorization: Bearer <token>")
	}
	c, err := a.tokens.verify(token)
	if err != nil {
		return identity{}, errors.New("invalid or expired token")
	}
	return identity{user: c.Subject, roles: c.Roles}, nil
}

// bearerToken extracts the token of a single "Authorization: Bearer" header.
func bearerToken(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != "" && len(token) <= maxBodyBytes
}

func (a *App) gatewayIdentity(r *http.Request) (identity, error) {
	if a.cfg.CheckGateway != nil {
		if err := a.cfg.CheckGateway(r); err != nil {
			return identity{}, errors.New("this API answers only requests relayed by the cloakroom gateway")
		}
	}
	user, ok := gatewayUser(r.Header.Values(HeaderUser))
	if !ok {
		return identity{}, errors.New("sign in first: no identity from the gateway")
	}
	roles, ok := parseGroups(r.Header.Values(HeaderGroups))
	if !ok {
		return identity{}, errors.New("malformed " + HeaderGroups)
	}
	return identity{user: user, roles: roles}, nil
}

// gatewayUser accepts exactly one non-empty, valid UTF-8 user name.
func gatewayUser(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false // absent, or ambiguous
	}
	user := strings.TrimSpace(values[0])
	return user, user != "" && len(user) <= maxNameLength && utf8.ValidString(user)
}

// parseGroups splits comma-separated group lists, dropping blanks and
// repeats.
func parseGroups(values []string) ([]string, bool) {
	groups := []string{}
	total := 0
	for _, v := range values {
		total += len(v)
		if total > maxGroupsLength || !utf8.ValidString(v) {
			return nil, false
		}
		for g := range strings.SplitSeq(v, ",") {
			if g = strings.TrimSpace(g); g != "" && !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	return groups, true
}

func (a *App) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r.Context()).admin() {
			writeError(w, http.StatusForbidden, "admins only")
			return
		}
		next(w, r)
	}
}

// LoginResponse is the answer to a ModeJWT POST /api/login.
type LoginResponse struct {
	Token     string    `json:"token"`
	TokenType string    `json:"token_type"`
	ExpiresAt time.Time `json:"expires_at"`
	User      string    `json:"user"`
	Roles     []string  `json:"roles"`
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	u, ok := a.checkPassword(in.Username, in.Password)
	if !ok {
		writeError(w, http.StatusUnauthorized, "wrong user name or password")
		return
	}
	token, exp, err := a.tokens.issue(u.Name, u.Roles)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "could not issue a token")
		return
	}
	writeJSON(w, http.StatusOK, LoginResponse{Token: token, TokenType: "Bearer", ExpiresAt: exp, User: u.Name, Roles: nonNil(u.Roles)})
}

// checkPassword compares SHA-256 digests in constant time and does the same
// work for unknown users. The lab's jwt app is not a model for password
// storage (the gateway's accounts package is); it only needs to sign in
// two demo users.
func (a *App) checkPassword(name, password string) (User, bool) {
	u, found := a.users[name]
	got := sha256.Sum256([]byte(password))
	match := subtle.ConstantTimeCompare(got[:], u.passwordHash[:]) == 1
	return u.User, found && match
}

func (a *App) me(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r.Context())
	writeJSON(w, http.StatusOK, Me{User: id.user, Roles: nonNil(id.roles), Admin: id.admin()})
}

func (a *App) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Comments())
}

func (a *App) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Text string `json:"text"`
	}
	if !decodeBody(w, r, &in) {
		return
	}
	text, err := commentText(in.Text)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, a.add(identityOf(r.Context()).user, text))
}

// commentText trims and bounds a comment. It does not sanitise: the lab
// needs the stored payload intact.
func commentText(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(s); {
	case !utf8.ValidString(s):
		return "", errors.New("a comment must be valid UTF-8")
	case n == 0:
		return "", errors.New("a comment needs some text")
	case n > maxCommentLength:
		return "", errors.New("a comment holds at most " + strconv.Itoa(maxCommentLength) + " characters")
	}
	return s, nil
}

func (a *App) add(author, text string) Comment {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.nextID++
	c := Comment{ID: a.nextID, Author: author, Text: text, CreatedAt: a.cfg.Now().UTC()}
	a.comments = append(a.comments, c)
	if len(a.comments) > maxComments {
		a.comments = slices.Delete(a.comments, 0, len(a.comments)-maxComments)
	}
	return c
}

// remove deletes a comment. It is a POST without a body so that the lab's
// cross-site form can aim at it: if a forged request got through, it would
// succeed.
func (a *App) remove(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "comment id must be a positive integer")
		return
	}
	a.mu.Lock()
	i := slices.IndexFunc(a.comments, func(c Comment) bool { return c.ID == id })
	if i >= 0 {
		a.comments = slices.Delete(a.comments, i, i+1)
	}
	a.mu.Unlock()
	if i < 0 {
		writeError(w, http.StatusNotFound, "no such comment")
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"deleted": id})
}

func (a *App) directory(w http.ResponseWriter, r *http.Request) {
	out := make([]DirectoryEntry, 0, len(a.users))
	for _, u := range a.users {
		out = append(out, DirectoryEntry{Name: u.Name, Email: u.Email, Roles: nonNil(u.Roles)})
	}
	slices.SortFunc(out, func(x, y DirectoryEntry) int { return strings.Compare(x.Name, y.Name) })
	writeJSON(w, http.StatusOK, out)
}

// decodeBody reads one JSON object into dst, answering 415, 413 or 400 and
// returning false when the request is not one.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) bool {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "send application/json")
		return false
	}
	err := decodeObject(http.MaxBytesReader(w, r.Body, maxBodyBytes), dst)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// decodeObject decodes exactly one JSON object with known fields.
func decodeObject(r io.Reader, dst any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return fmt.Errorf("%w: body must be one JSON object with the documented fields", errBadRequest)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: body must hold exactly one JSON object", errBadRequest)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
