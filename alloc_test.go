package cloakroom_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
)

// headerOnlyWriter keeps headers and discards the body, so the count below
// is the middleware's, not a recorder's.
type headerOnlyWriter struct{ h http.Header }

func (w *headerOnlyWriter) Header() http.Header         { return w.h }
func (w *headerOnlyWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerOnlyWriter) WriteHeader(int)             {}

// WriteString spares io.WriteString a conversion that would be counted.
func (w *headerOnlyWriter) WriteString(s string) (int, error) { return len(s), nil }

// TestHotPathAllocations pins the cost of the common request, a logged-in
// GET that reads one value, in allocations rather than time: the writer
// (with the session, its context and the request copy inside it) and the
// value's string. A closure-based middleware once cost a third, because
// the request copy escaped when the closure was inlined into the caller's
// package.
func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	store := memstore.New(memstore.Config{})
	defer store.Close()
	m := quietManager(t, store)
	login := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		if err := s.Login(r.Context(), "alice", cloakroom.LoginOptions{Values: map[string]string{"name": "alice"}}); err != nil {
			t.Error(err)
		}
	}))
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", strings.SplitN(rec.Header().Get("Set-Cookie"), ";", 2)[0])

	var got string
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = m.Session(r).GetString("name")
		io.WriteString(w, got)
	}))
	w := &headerOnlyWriter{h: make(http.Header)}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	if got != "alice" {
		t.Fatalf("handler read %q, want alice", got)
	}
	if allocs > 2 {
		t.Errorf("%.1f allocations per logged-in request, want at most 2", allocs)
	}
}

// quietManager is a manager on store with default settings and no log
// output, closed when the test ends.
func quietManager(t *testing.T, store cloakroom.Store) *cloakroom.Manager {
	t.Helper()
	m, err := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestCookieValueAllocations: the session middleware runs it on every
// request, and the gateway's packages on many.
func TestCookieValueAllocations(t *testing.T) {
	name := cloakroom.DefaultCookieName
	h := http.Header{"Cookie": {"a=1; " + name + "=" + strings.Repeat("x", cloakroom.TokenLength) + "; b=2", "c=3"}}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := cloakroom.CookieValue(h, name); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per call, want none", allocs)
	}
}
