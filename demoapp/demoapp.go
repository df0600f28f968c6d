// Package demoapp is the small application that `cloakroom demo` puts
// behind the gateway: a shared notes board with a JSON API and a
// single-page front end.
//
// The API holds no sessions and checks no passwords. It reads the identity
// headers the gateway sets (X-Forwarded-User, X-Forwarded-Email,
// X-Forwarded-Groups) and answers 401 to a request without them. That is
// the point of the demo: the application behind a Backend-for-Frontend
// never sees a session token. Because any local process could send those
// headers, `cloakroom demo` wraps it in [Verified]: each request must also
// carry the gateway's internal JWT for the same user, checked against the
// gateway's JWKS, once. Run it only behind the gateway, on a loopback
// address.
package demoapp

import (
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Identity headers set by the gateway.
const (
	HeaderUser   = "X-Forwarded-User"
	HeaderEmail  = "X-Forwarded-Email"
	HeaderGroups = "X-Forwarded-Groups"
)

// AdminGroup is the group whose members may delete any note.
const AdminGroup = "admin"

// Limits on what the board accepts.
const (
	maxNoteLength = 1000     // characters of note text
	maxNotes      = 500      // the oldest notes are dropped beyond this
	maxBodyBytes  = 16 << 10 // request body
	maxUserLength = 256      // bytes of X-Forwarded-User
	maxGroupsLen  = 4 << 10  // bytes of X-Forwarded-Groups
)

//go:embed static
var staticFiles embed.FS

// Static returns the single-page front end: index.html, app.js and
// style.css. The page loads no inline script, so it works under a strict
// Content-Security-Policy.
func Static() fs.FS {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	return sub
}

// Note is one entry on the board.
type Note struct {
	ID        int64     `json:"id"`
	Author    string    `json:"author"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

// Me is the answer to GET /api/me.
type Me struct {
	User   string   `json:"user"`
	Email  string   `json:"email,omitempty"`
	Groups []string `json:"groups"`
	Admin  bool     `json:"admin"`
}

type identity struct {
	user   string
	email  string
	groups []string
}

func (id identity) admin() bool { return slices.Contains(id.groups, AdminGroup) }

// board keeps the notes in memory; they vanish when the process exits.
type board struct {
	mu     sync.Mutex
	nextID int64
	notes  []Note
	now    func() time.Time
}

// API returns the notes board's JSON API, with a fresh, empty board apart
// from a welcome note:
//
//	GET    /api/me          who the gateway says you are
//	GET    /api/notes       all notes, newest first
//	POST   /api/notes       {"text": "..."} adds a note
//	DELETE /api/notes/{id}  removes a note (its author or an admin)
//
// Every route answers 401 without X-Forwarded-User.
func API() http.Handler {
	b := &board{now: time.Now}
	b.add("cloakroom", "Welcome! This board runs behind the cloakroom gateway. Your browser holds only an HttpOnly session cookie; this app sees who you are from headers the gateway sets.")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/me", b.me)
	mux.HandleFunc("GET /api/notes", b.list)
	mux.HandleFunc("POST /api/notes", b.create)
	mux.HandleFunc("DELETE /api/notes/{id}", b.remove)
	return requireIdentity(mux)
}

// requireIdentity refuses requests the gateway did not vouch for.
func requireIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		id, ok := identityFrom(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, "no identity: this API must be reached through the cloakroom gateway")
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	})
}

func identityFrom(r *http.Request) (identity, bool) {
	users := r.Header.Values(HeaderUser)
	if len(users) != 1 {
		return identity{}, false // absent, or ambiguous
	}
	user := strings.TrimSpace(users[0])
	if user == "" || len(user) > maxUserLength || !utf8.ValidString(user) {
		return identity{}, false
	}
	id := identity{user: user, email: strings.TrimSpace(r.Header.Get(HeaderEmail)), groups: []string{}}
	raw := strings.Join(r.Header.Values(HeaderGroups), ",")
	if len(raw) > maxGroupsLen {
		return identity{}, false
	}
	for g := range strings.SplitSeq(raw, ",") {
		if g = strings.TrimSpace(g); g != "" && !slices.Contains(id.groups, g) {
			id.groups = append(id.groups, g)
		}
	}
	return id, true
}

func (b *board) me(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r.Context())
	writeJSON(w, http.StatusOK, Me{User: id.user, Email: id.email, Groups: id.groups, Admin: id.admin()})
}

func (b *board) list(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	out := make([]Note, 0, len(b.notes))
	for i := len(b.notes) - 1; i >= 0; i-- {
		out = append(out, b.notes[i])
	}
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (b *board) create(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "send the note as application/json")
		return
	}
	var in struct {
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "body must be a JSON object {\"text\": \"...\"}")
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "body must hold exactly one JSON object")
		return
	}
	text := strings.TrimSpace(in.Text)
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		writeError(w, http.StatusBadRequest, "a note needs some text")
		return
	case n > maxNoteLength:
		writeError(w, http.StatusBadRequest, "a note holds at most "+strconv.Itoa(maxNoteLength)+" characters")
		return
	}
	note := b.add(identityOf(r.Context()).user, text)
	writeJSON(w, http.StatusCreated, note)
}

func (b *board) add(author, text string) Note {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	note := Note{ID: b.nextID, Author: author, Text: text, CreatedAt: b.now().UTC()}
	b.notes = append(b.notes, note)
	if len(b.notes) > maxNotes {
		b.notes = slices.Delete(b.notes, 0, len(b.notes)-maxNotes)
	}
	return note
}

func (b *board) remove(w http.ResponseWriter, r *http.Request) {
	noteID, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || noteID <= 0 {
		writeError(w, http.StatusBadRequest, "note id must be a positive integer")
		return
	}
	id := identityOf(r.Context())
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.IndexFunc(b.notes, func(n Note) bool { return n.ID == noteID })
	switch {
	case i < 0:
		writeError(w, http.StatusNotFound, "no such note")
	case b.notes[i].Author != id.user && !id.admin():
		writeError(w, http.StatusForbidden, "only the note's author or an admin may delete it")
	default:
		b.notes = slices.Delete(b.notes, i, i+1)
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
