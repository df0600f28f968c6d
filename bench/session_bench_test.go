package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/sessions"

	"github.com/cloakroom/cloakroom"
	cmem "github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/sqlitestore"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the middleware, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// WriteString keeps io.WriteString from converting, so the bare handler's
// floor is the handler, not a copy.
func (w *discardWriter) WriteString(s string) (int, error) { return len(s), nil }

func (w *discardWriter) reset() {
	for k := range w.h {
		delete(w.h, k)
	}
}

// run serves req through h b.N times.
func run(b *testing.B, h http.Handler, req *http.Request) {
	b.Helper()
	w := &discardWriter{h: make(http.Header)}
	// One warm-up request, checked, so a broken setup cannot benchmark an
	// error path.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "alice" {
		b.Fatalf("warm-up request: %d %q, want 200 alice", rec.Code, rec.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.reset()
		h.ServeHTTP(w, req)
	}
}

func BenchmarkBare(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alice") })
	run(b, h, httptest.NewRequest("GET", "/", nil))
}

// cloakroomRequest logs in through m and returns a request carrying the
// session cookie, and the handler that reads the session's user.
func cloakroomRequest(b *testing.B, store cloakroom.Store) (http.Handler, *http.Request) {
	m, err := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	login := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		if err := s.Login(r.Context(), "alice", cloakroom.LoginOptions{}); err != nil {
			b.Fatal(err)
		}
		s.Put("name", "alice")
	}))
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	cookie := strings.SplitN(rec.Header().Get("Set-Cookie"), ";", 2)[0]
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", cookie)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, m.Session(r).GetString("name"))
	}))
	return h, req
}

func BenchmarkCloakroomMemstore(b *testing.B) {
	store := cmem.New(cmem.Config{})
	defer store.Close()
	h, req := cloakroomRequest(b, store)
	run(b, h, req)
}

func benchSQLite(b *testing.B, cfg sqlitestore.Config) {
	store, err := sqlitestore.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	h, req := cloakroomRequest(b, store)
	run(b, h, req)
}

// BenchmarkCloakroomSQLiteWarm is the embedded default: Find answers from
// the store's cache after one read of the file's wal-index header.
func BenchmarkCloakroomSQLiteWarm(b *testing.B) { benchSQLite(b, sqlitestore.Config{}) }

// BenchmarkCloakroomSQLiteCold queries the file on every request.
func BenchmarkCloakroomSQLiteCold(b *testing.B) {
	benchSQLite(b, sqlitestore.Config{DisableCache: true})
}

// BenchmarkSQLiteRawSelect is the floor of an uncached SQLite check: the
// session row's blob by primary key, through database/sql and the same
// driver, with a prepared statement, on a file the store wrote. No
// request, no decoding.
func BenchmarkSQLiteRawSelect(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "bench.db")
	store, err := sqlitestore.Open(ctx, path, sqlitestore.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	rec := cloakroom.Record{Key: cloakroom.Key{1}, Handle: "h", UserID: "alice", Version: 1,
		CreatedAt: time.Now(), LastSeen: time.Now(), IdleTimeout: time.Hour, AbsoluteDeadline: time.Now().Add(time.Hour),
		Data: []byte("name\x00alice")}
	if err := store.Commit(ctx, rec); err != nil {
		b.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	stmt, err := db.PrepareContext(ctx, "SELECT record FROM sessions WHERE key = ?1")
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	selectOne := func() int {
		rows, err := stmt.QueryContext(ctx, rec.Key[:])
		if err != nil {
			b.Fatal(err)
		}
		var blob sql.RawBytes
		if !rows.Next() {
			b.Fatal("no row")
		}
		if err := rows.Scan(&blob); err != nil {
			b.Fatal(err)
		}
		n := len(blob)
		rows.Close()
		return n
	}
	if selectOne() == 0 {
		b.Fatal("empty record")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		selectOne()
	}
}

func BenchmarkSCSMemstore(b *testing.B) {
	sm := scs.New()
	sm.Store = memstore.NewWithCleanupInterval(time.Hour)
	login := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.RenewToken(r.Context())
		sm.Put(r.Context(), "name", "alice")
	}))
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", strings.SplitN(rec.Header().Get("Set-Cookie"), ";", 2)[0])
	h := sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sm.GetString(r.Context(), "name"))
	}))
	run(b, h, req)
}

func BenchmarkGorillaCookieStore(b *testing.B) {
	store := sessions.NewCookieStore(make32(), make32())
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := store.Get(r, "session")
		s.Values["name"] = "alice"
		if err := s.Save(r, w); err != nil {
			b.Fatal(err)
		}
	})
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", strings.SplitN(rec.Header().Get("Set-Cookie"), ";", 2)[0])
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// New, not Get: Get caches the decoded session in the request's
		// registry, and the benchmark reuses one request.
		s, err := store.New(r, "session")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		name, _ := s.Values["name"].(string)
		io.WriteString(w, name)
	})
	run(b, h, req)
}

func make32() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// jwtHandler verifies a bearer token as a typical JWT middleware does and
// writes its subject.
func jwtHandler(method jwt.SigningMethod, verifyKey any) http.Handler {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{method.Alg()}), jwt.WithExpirationRequired(), jwt.WithAudience("app"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		var claims jwt.RegisteredClaims
		if _, err := parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return verifyKey, nil }); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, claims.Subject)
	})
}

func benchJWT(b *testing.B, method jwt.SigningMethod, signKey, verifyKey any) {
	claims := jwt.RegisteredClaims{Subject: "alice", Audience: jwt.ClaimStrings{"app"},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now())}
	token, err := jwt.NewWithClaims(method, claims).SignedString(signKey)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	run(b, jwtHandler(method, verifyKey), req)
}

func BenchmarkJWTHS256(b *testing.B) {
	key := make32()
	benchJWT(b, jwt.SigningMethodHS256, key, key)
}

func BenchmarkJWTES256(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	benchJWT(b, jwt.SigningMethodES256, key, &key.PublicKey)
}

func BenchmarkJWTEdDSA(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	benchJWT(b, jwt.SigningMethodEdDSA, priv, pub)
}

// BenchmarkFloor is the least any server-side session check can cost: one
// SHA-256 of the token and one map lookup, around the bare handler.
func BenchmarkFloor(b *testing.B) {
	var raw [32]byte
	rand.Read(raw[:])
	sessions := map[[32]byte]string{sha256.Sum256(raw[:]): "alice"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sessions[sha256.Sum256(raw[:])])
	})
	run(b, h, httptest.NewRequest("GET", "/", nil))
}
