package bench

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/forwardauth"
	cmem "github.com/cloakroom/cloakroom/memstore"
)

// BenchmarkForwardAuthDecision is one nginx auth_request decision answered
// in-process, without a socket: the adapter reads X-Original-URL, the
// rules are matched, the session core checks the cookie (memstore) and
// the identity headers are written. It is the part of a decision's cost
// that is cloakroom's own; bench/forwardauth measures the whole decision
// behind a real nginx, against oauth2-proxy.
func BenchmarkForwardAuthDecision(b *testing.B) {
	store := cmem.New(cmem.Config{})
	defer store.Close()
	// cloakroomRequest signs alice in; its request carries her cookie.
	_, signedIn := cloakroomRequest(b, store)
	// A second manager on the same store, as a second gateway would be.
	m, err := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	h, err := forwardauth.New(forwardauth.Config{
		Sessions: m,
		Proxies:  []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Rules:    []forwardauth.Rule{{Host: "app.example.com"}},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/auth/forward/nginx", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Cookie", signedIn.Header.Get("Cookie"))
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URL", "https://app.example.com/items?page=2")
	req.Header.Set("Accept", "application/json")

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get(forwardauth.HeaderUser) != "alice" {
		b.Fatalf("warm-up decision: %d, user %q; want 200 for alice", rec.Code, rec.Header().Get(forwardauth.HeaderUser))
	}
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
	}
}
