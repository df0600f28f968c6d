package conduit

import (
	"context"
	"crypto/pbkdf2"
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

// Limits of the API.
const (
	// MinSecretBytes is the shortest HS256 key [New] accepts.
	MinSecretBytes = 32
	// DefaultTokenLifetime is how long a token lives unless
	// Config.TokenLifetime says otherwise.
	DefaultTokenLifetime = time.Hour
	// MaxBodyBytes bounds a request body; a longer one is answered 413.
	MaxBodyBytes = 64 << 10
	// MaxLoggedRequests is how many requests [App.Requests] keeps, the
	// most recent ones.
	MaxLoggedRequests = 1000

	maxUsers       = 10000
	maxArticles    = 10000
	maxNameBytes   = 64
	maxEmailBytes  = 254
	maxPassBytes   = 256
	maxTitleRunes  = 200
	maxTags        = 10
	maxTagRunes    = 50
	maxSlugBase    = 60
	defaultLimit   = 20
	maxLimit       = 100
	hashIterations = 4096
)

// Config configures an [App].
type Config struct {
	// Secret is the HS256 key of the tokens, at least MinSecretBytes
	// bytes. Required.
	Secret []byte
	// TokenLifetime is how long an issued token lives. Default one hour.
	TokenLifetime time.Duration
	// Now is the clock, for tokens' iat and exp and articles' dates.
	// Default time.Now.
	Now func() time.Time
}

// ErrInvalidConfig wraps every problem [New] finds in a Config.
var ErrInvalidConfig = errors.New("conduit: invalid configuration")

// Request is one request the API saw, as [App.Requests] lists it. It never
// holds token material.
type Request struct {
	Method string
	Path   string
	// Authorization says the request had an Authorization header, valid
	// or not.
	Authorization bool
	// UserID is the user of the request's valid token, 0 when the request
	// carried none (no header, another scheme, a bad signature, an
	// expired token, an unknown user).
	UserID int64
}

// App is the Conduit backend: its users, its articles, and the log of
// the requests it saw. It is safe for concurrent use.
type App struct {
	secret   []byte
	lifetime time.Duration
	now      func() time.Time

	mu           sync.Mutex
	users        map[int64]*user
	byEmail      map[string]int64 // lower-cased e-mail
	byName       map[string]int64 // lower-cased username
	nextUserID   int64
	articles     []*article // oldest first
	bySlug       map[string]*article
	nextArticle  int64
	requests     []Request
	withToken    int
	withoutToken int
}

type user struct {
	id                          int64
	email, username, bio, image string
	salt, hash                  []byte
}

type article struct {
	slug, title, description, body string
	tags                           []string
	created, updated               time.Time
	authorID                       int64
	favoritedBy                    map[int64]bool
}

// New checks cfg and returns an App with no users and no articles.
func New(cfg Config) (*App, error) {
	if len(cfg.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("%w: Secret must hold at least %d bytes (got %d)", ErrInvalidConfig, MinSecretBytes, len(cfg.Secret))
	}
	if cfg.TokenLifetime < 0 {
		return nil, fmt.Errorf("%w: TokenLifetime must not be negative (got %v)", ErrInvalidConfig, cfg.TokenLifetime)
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &App{
		secret:   slices.Clone(cfg.Secret),
		lifetime: cfg.TokenLifetime,
		now:      cfg.Now,
		users:    map[int64]*user{},
		byEmail:  map[string]int64{},
		byName:   map[string]int64{},
		bySlug:   map[string]*article{},
	}, nil
}

// Seen counts the requests the API saw: those that carried a valid token
// and those that did not.
func (a *App) Seen() (withToken, withoutToken int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.withToken, a.withoutToken
}

// Requests returns the most recent requests the API saw, oldest first, at
// most MaxLoggedRequests of them.
func (a *App) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests)
}

// API returns the JSON API. It serves only paths under /api/; any other
// path is answered 404.
func (a *App) API() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/users/login", a.login)
	mux.HandleFunc("/api/users", redirectSlash)
	mux.HandleFunc("POST /api/users/{$}", a.register)
	mux.HandleFunc("GET /api/user", a.signedIn(a.currentUser))
	mux.HandleFunc("PUT /api/user", a.signedIn(a.updateUser))
	mux.HandleFunc("GET /api/articles", a.maybeSignedIn(a.listArticles))
	mux.HandleFunc("POST /api/articles", a.signedIn(a.createArticle))
	mux.HandleFunc("GET /api/articles/{slug}", a.maybeSignedIn(a.getArticle))
	mux.HandleFunc("DELETE /api/articles/{slug}", a.signedIn(a.deleteArticle))
	mux.HandleFunc("POST /api/articles/{slug}/favorite", a.signedIn(a.favorite(true)))
	mux.HandleFunc("DELETE /api/articles/{slug}/favorite", a.signedIn(a.favorite(false)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(mux, r); allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		writeError(w, http.StatusNotFound, "not found")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := a.identify(r)
		a.record(r, id)
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// redirectSlash answers /api/users, whatever the method, the way routers
// that redirect trailing slashes do: 307, so the browser repeats the
// method and the body at /api/users/.
func redirectSlash(w http.ResponseWriter, r *http.Request) {
	target := "/api/users/"
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// allowed lists the methods of the routes that match r's path with another
// method, "" when none does.
func allowed(mux *http.ServeMux, r *http.Request) string {
	var methods []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			methods = append(methods, m)
			if m == http.MethodGet {
				methods = append(methods, http.MethodHead)
			}
		}
	}
	return strings.Join(methods, ", ")
}

// identity is who a request is, by its Authorization header.
type identity struct {
	present bool   // the request had an Authorization header
	valid   bool   // ... carrying a valid token of a known user
	token   string // the token, when valid
	userID  int64
}

type identityKey struct{}

func identityOf(r *http.Request) identity {
	id, _ := r.Context().Value(identityKey{}).(identity)
	return id
}

// identify reads the one "Authorization: Token <jwt>" header (the
// RealWorld scheme; Bearer is not accepted).
func (a *App) identify(r *http.Request) identity {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return identity{}
	}
	id := identity{present: true}
	if len(values) != 1 {
		return id
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Token") || token == "" {
		return id
	}
	c, err := verify(a.secret, token, a.now())
	if err != nil {
		return id
	}
	a.mu.Lock()
	_, known := a.users[c.ID]
	a.mu.Unlock()
	if !known {
		return id
	}
	return identity{present: true, valid: true, token: token, userID: c.ID}
}

func (a *App) record(r *http.Request, id identity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id.valid {
		a.withToken++
	} else {
		a.withoutToken++
	}
	if len(a.requests) == MaxLoggedRequests {
		a.requests = slices.Delete(a.requests, 0, 1)
	}
	a.requests = append(a.requests, Request{Method: r.Method, Path: r.URL.Path, Authorization: id.present, UserID: id.userID})
}

// signedIn answers 401 unless the request carries a valid token.
func (a *App) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r).valid {
			unauthorized(w)
			return
		}
		next(w, r)
	}
}

// maybeSignedIn lets anonymous requests through but, like express-jwt
// with credentialsRequired false, answers 401 to a request whose
// Authorization header holds no valid token.
func (a *App) maybeSignedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if id := identityOf(r); id.present && !id.valid {
			unauthorized(w)
			return
		}
		next(w, r)
	}
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Token realm="conduit"`)
	writeError(w, http.StatusUnauthorized, "missing, invalid or expired token: send Authorization: Token <jwt>")
}

// --- users ---------------------------------------------------------------

type userFields struct {
	Email    *string `json:"email"`
	Username *string `json:"username"`
	Password *string `json:"password"`
	Bio      *string `json:"bio"`
	Image    *string `json:"image"`
}

type userBody struct {
	User *userFields `json:"user"`
}

type userJSON struct {
	Email    string `json:"email"`
	Username string `json:"username"`
	Bio      string `json:"bio"`
	Image    string `json:"image"`
	Token    string `json:"token"`
}

func (a *App) userAnswer(u *user, token string) map[string]userJSON {
	return map[string]userJSON{"user": {Email: u.email, Username: u.username, Bio: u.bio, Image: u.image, Token: token}}
}

// issue returns a fresh token for u. The caller holds a.mu or owns u.
func (a *App) issue(u *user) string {
	now := a.now()
	return sign(a.secret, claims{ID: u.id, Username: u.username, Iat: now.Unix(), Exp: now.Add(a.lifetime).Unix()})
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	var in userBody
	if !decode(w, r, &in) {
		return
	}
	if in.User == nil || in.User.Email == nil || in.User.Password == nil {
		writeError(w, http.StatusUnprocessableEntity, "email and password are required")
		return
	}
	a.mu.Lock()
	var u user
	id, found := a.byEmail[strings.ToLower(strings.TrimSpace(*in.User.Email))]
	if found {
		u = *a.users[id]
	}
	a.mu.Unlock()
	if !found {
		u.salt = make([]byte, 16) // the same work for an unknown e-mail
	}
	got := hashPassword(*in.User.Password, u.salt)
	if subtle.ConstantTimeCompare(got, u.hash) != 1 || !found {
		writeError(w, http.StatusUnprocessableEntity, "email or password is invalid")
		return
	}
	writeJSON(w, http.StatusOK, a.userAnswer(&u, a.issue(&u)))
}

func (a *App) register(w http.ResponseWriter, r *http.Request) {
	var in userBody
	if !decode(w, r, &in) {
		return
	}
	if in.User == nil {
		writeError(w, http.StatusUnprocessableEntity, "user is required")
		return
	}
	f := in.User
	username, email := trimmed(f.Username), trimmed(f.Email)
	var problems []string
	problems = append(problems, checkUsername(username)...)
	problems = append(problems, checkEmail(email)...)
	problems = append(problems, checkPassword(f.Password)...)
	if len(problems) > 0 {
		writeError(w, http.StatusUnprocessableEntity, problems...)
		return
	}
	u := &user{email: email, username: username, salt: make([]byte, 16)}
	rand.Read(u.salt)
	u.hash = hashPassword(*f.Password, u.salt)

	a.mu.Lock()
	problems = a.taken(0, username, email)
	if len(problems) == 0 && len(a.users) >= maxUsers {
		problems = []string{"too many users"}
	}
	if len(problems) > 0 {
		a.mu.Unlock()
		writeError(w, http.StatusUnprocessableEntity, problems...)
		return
	}
	a.nextUserID++
	u.id = a.nextUserID
	a.users[u.id] = u
	a.byEmail[strings.ToLower(email)] = u.id
	a.byName[strings.ToLower(username)] = u.id
	token := a.issue(u)
	answer := a.userAnswer(u, token)
	a.mu.Unlock()
	writeJSON(w, http.StatusCreated, answer)
}

// taken says which of username and email another user than id holds. The
// caller holds a.mu.
func (a *App) taken(id int64, username, email string) []string {
	var problems []string
	if other, ok := a.byName[strings.ToLower(username)]; ok && other != id {
		problems = append(problems, "username has already been taken")
	}
	if other, ok := a.byEmail[strings.ToLower(email)]; ok && other != id {
		problems = append(problems, "email has already been taken")
	}
	return problems
}

// currentUser answers the user with the very token the request carried:
// the RealWorld "profile echo".
func (a *App) currentUser(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	a.mu.Lock()
	answer := a.userAnswer(a.users[id.userID], id.token)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, answer)
}

func (a *App) updateUser(w http.ResponseWriter, r *http.Request) {
	var in userBody
	if !decode(w, r, &in) {
		return
	}
	if in.User == nil {
		writeError(w, http.StatusUnprocessableEntity, "user is required")
		return
	}
	f := in.User
	var problems []string
	if f.Username != nil {
		problems = append(problems, checkUsername(trimmed(f.Username))...)
	}
	if f.Email != nil {
		problems = append(problems, checkEmail(trimmed(f.Email))...)
	}
	if f.Password != nil {
		problems = append(problems, checkPassword(f.Password)...)
	}
	if f.Bio != nil && !utf8.ValidString(*f.Bio) {
		problems = append(problems, "bio must be valid UTF-8")
	}
	if f.Image != nil && (!utf8.ValidString(*f.Image) || len(*f.Image) > 2048) {
		problems = append(problems, "image must be a URL of at most 2048 bytes")
	}
	if len(problems) > 0 {
		writeError(w, http.StatusUnprocessableEntity, problems...)
		return
	}
	var salt, hash []byte
	if f.Password != nil {
		salt = make([]byte, 16)
		rand.Read(salt)
		hash = hashPassword(*f.Password, salt)
	}

	id := identityOf(r).userID
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[id]
	username, email := u.username, u.email
	if f.Username != nil {
		username = trimmed(f.Username)
	}
	if f.Email != nil {
		email = trimmed(f.Email)
	}
	if problems := a.taken(id, username, email); len(problems) > 0 {
		writeError(w, http.StatusUnprocessableEntity, problems...)
		return
	}
	delete(a.byName, strings.ToLower(u.username))
	delete(a.byEmail, strings.ToLower(u.email))
	u.username, u.email = username, email
	a.byName[strings.ToLower(username)] = id
	a.byEmail[strings.ToLower(email)] = id
	if f.Bio != nil {
		u.bio = *f.Bio
	}
	if f.Image != nil {
		u.image = *f.Image
	}
	if hash != nil {
		u.salt, u.hash = salt, hash
	}
	writeJSON(w, http.StatusOK, a.userAnswer(u, a.issue(u)))
}

func trimmed(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}

func checkUsername(s string) []string {
	switch {
	case s == "":
		return []string{"username can't be blank"}
	case len(s) > maxNameBytes || !utf8.ValidString(s) || strings.ContainsAny(s, "/ \t\r\n"):
		return []string{fmt.Sprintf("username must be at most %d bytes of UTF-8, without spaces or slashes", maxNameBytes)}
	}
	return nil
}

func checkEmail(s string) []string {
	switch {
	case s == "":
		return []string{"email can't be blank"}
	case len(s) > maxEmailBytes || !utf8.ValidString(s) || strings.ContainsAny(s, " \t\r\n") ||
		strings.Count(s, "@") != 1 || strings.HasPrefix(s, "@") || strings.HasSuffix(s, "@"):
		return []string{"email is invalid"}
	}
	return nil
}

func checkPassword(p *string) []string {
	switch {
	case p == nil || *p == "":
		return []string{"password can't be blank"}
	case len(*p) > maxPassBytes:
		return []string{fmt.Sprintf("password must be at most %d bytes", maxPassBytes)}
	}
	return nil
}

// hashPassword is PBKDF2-HMAC-SHA256 with a per-user salt. It is enough
// for a lab; the gateway's accounts package is the model for password
// storage.
func hashPassword(password string, salt []byte) []byte {
	key, err := pbkdf2.Key(sha256.New, password, salt, hashIterations, sha256.Size)
	if err != nil {
		panic(err) // the key length is fixed and valid
	}
	return key
}

// --- articles ------------------------------------------------------------

type articleFields struct {
	Title       *string  `json:"title"`
	Description *string  `json:"description"`
	Body        *string  `json:"body"`
	TagList     []string `json:"tagList"`
}

type articleJSON struct {
	Slug           string      `json:"slug"`
	Title          string      `json:"title"`
	Description    string      `json:"description"`
	Body           string      `json:"body"`
	TagList        []string    `json:"tagList"`
	CreatedAt      string      `json:"createdAt"`
	UpdatedAt      string      `json:"updatedAt"`
	Favorited      bool        `json:"favorited"`
	FavoritesCount int         `json:"favoritesCount"`
	Author         profileJSON `json:"author"`
}

type profileJSON struct {
	Username  string `json:"username"`
	Bio       string `json:"bio"`
	Image     string `json:"image"`
	Following bool   `json:"following"`
}

// view renders ar for the user viewer (0: anonymous). The caller holds
// a.mu.
func (a *App) view(ar *article, viewer int64) articleJSON {
	author := a.users[ar.authorID]
	return articleJSON{
		Slug: ar.slug, Title: ar.title, Description: ar.description, Body: ar.body,
		TagList:   slices.Clone(ar.tags),
		CreatedAt: timestamp(ar.created), UpdatedAt: timestamp(ar.updated),
		Favorited: viewer != 0 && ar.favoritedBy[viewer], FavoritesCount: len(ar.favoritedBy),
		Author: profileJSON{Username: author.username, Bio: author.bio, Image: author.image},
	}
}

// timestamp is ISO 8601 in UTC with milliseconds, as RealWorld shows.
func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (a *App) listArticles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, ok1 := number(q.Get("limit"), defaultLimit, maxLimit)
	offset, ok2 := number(q.Get("offset"), 0, maxArticles)
	if !ok1 || !ok2 {
		writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("limit must be 0 to %d and offset 0 to %d", maxLimit, maxArticles))
		return
	}
	tag, author, favoritedBy := q.Get("tag"), q.Get("author"), q.Get("favorited")
	viewer := identityOf(r).userID

	a.mu.Lock()
	defer a.mu.Unlock()
	fan := int64(-1)
	if favoritedBy != "" {
		if id, ok := a.byName[strings.ToLower(favoritedBy)]; ok {
			fan = id
		}
	}
	out := []articleJSON{}
	count := 0
	for _, ar := range slices.Backward(a.articles) {
		switch {
		case tag != "" && !slices.Contains(ar.tags, tag),
			author != "" && !strings.EqualFold(a.users[ar.authorID].username, author),
			favoritedBy != "" && !ar.favoritedBy[fan]:
			continue
		}
		if count >= offset && len(out) < limit {
			out = append(out, a.view(ar, viewer))
		}
		count++
	}
	writeJSON(w, http.StatusOK, map[string]any{"articles": out, "articlesCount": count})
}

// number parses a non-negative query parameter up to max, def when empty.
func number(s string, def, max int) (int, bool) {
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && n <= max
}

func (a *App) createArticle(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Article *articleFields `json:"article"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.Article == nil {
		writeError(w, http.StatusUnprocessableEntity, "article is required")
		return
	}
	f := in.Article
	title, body, description := trimmed(f.Title), trimmed(f.Body), trimmed(f.Description)
	var problems []string
	switch {
	case title == "":
		problems = append(problems, "title can't be blank")
	case utf8.RuneCountInString(title) > maxTitleRunes || !utf8.ValidString(title):
		problems = append(problems, fmt.Sprintf("title must be at most %d characters of UTF-8", maxTitleRunes))
	}
	if body == "" {
		problems = append(problems, "body can't be blank")
	} else if !utf8.ValidString(body) {
		problems = append(problems, "body must be valid UTF-8")
	}
	if !utf8.ValidString(description) {
		problems = append(problems, "description must be valid UTF-8")
	}
	tags := []string{}
	for _, t := range f.TagList {
		t = strings.TrimSpace(t)
		if t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
		if !utf8.ValidString(t) || utf8.RuneCountInString(t) > maxTagRunes {
			problems = append(problems, fmt.Sprintf("a tag must be at most %d characters of UTF-8", maxTagRunes))
			break
		}
	}
	if len(tags) > maxTags {
		problems = append(problems, fmt.Sprintf("at most %d tags", maxTags))
	}
	if len(problems) > 0 {
		writeError(w, http.StatusUnprocessableEntity, problems...)
		return
	}

	now := a.now()
	viewer := identityOf(r).userID
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.articles) >= maxArticles {
		writeError(w, http.StatusUnprocessableEntity, "too many articles")
		return
	}
	a.nextArticle++
	ar := &article{
		slug:  slugify(title) + "-" + strconv.FormatInt(a.nextArticle, 10),
		title: title, description: description, body: body, tags: tags,
		created: now, updated: now, authorID: viewer, favoritedBy: map[int64]bool{},
	}
	a.articles = append(a.articles, ar)
	a.bySlug[ar.slug] = ar
	writeJSON(w, http.StatusCreated, map[string]articleJSON{"article": a.view(ar, viewer)})
}

// slugify keeps a title's ASCII letters and digits, lower-cased, with one
// dash for each run of anything else.
func slugify(title string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(title) {
		switch {
		case 'a' <= c && c <= 'z' || '0' <= c && c <= '9':
			b.WriteRune(c)
			dash = false
		case b.Len() > 0 && !dash:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= maxSlugBase {
			break
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		return "article"
	}
	return s
}

func (a *App) getArticle(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ar, ok := a.bySlug[r.PathValue("slug")]
	if !ok {
		writeError(w, http.StatusNotFound, "article not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]articleJSON{"article": a.view(ar, identityOf(r).userID)})
}

func (a *App) deleteArticle(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ar, ok := a.bySlug[r.PathValue("slug")]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "article not found")
	case ar.authorID != identityOf(r).userID:
		writeError(w, http.StatusForbidden, "only the author may delete an article")
	default:
		delete(a.bySlug, ar.slug)
		a.articles = slices.DeleteFunc(a.articles, func(x *article) bool { return x == ar })
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *App) favorite(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		viewer := identityOf(r).userID
		a.mu.Lock()
		defer a.mu.Unlock()
		ar, ok := a.bySlug[r.PathValue("slug")]
		if !ok {
			writeError(w, http.StatusNotFound, "article not found")
			return
		}
		if on {
			ar.favoritedBy[viewer] = true
		} else {
			delete(ar.favoritedBy, viewer)
		}
		writeJSON(w, http.StatusOK, map[string]articleJSON{"article": a.view(ar, viewer)})
	}
}

// --- JSON ----------------------------------------------------------------

// decode reads one JSON value into dst, answering 415, 413 or 422 and
// returning false when the request does not hold one. Unknown fields are
// ignored, as most apps do.
func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != "application/json" && !strings.HasSuffix(ct, "+json")) {
		writeError(w, http.StatusUnsupportedMediaType, "send Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	err = dec.Decode(dst)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = extra
			if err == nil {
				err = errors.New("more than one JSON value")
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
		return false
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers the RealWorld way: {"errors":{"body":[...]}}.
func writeError(w http.ResponseWriter, status int, messages ...string) {
	writeJSON(w, status, map[string]map[string][]string{"errors": {"body": messages}})
}
