package dbsc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/memstore"
)

// browserLifetime is the bound cookie's lifetime in the Chromium tests:
// the shortest the binder allows, so that several lifetimes pass quickly.
const browserLifetime = dbsc.MinCookieLifetime

// TestChromiumBindsALibrarySession: an app that uses the library directly
// (a manager whose binding hook is the binder's, a sign-in that offers
// registration) in Chromium 156 with its DBSC test flags. The browser
// registers, its requests keep working across several bound-cookie
// lifetimes, and its whole cookie store, copied into a plain HTTP client,
// stops working once the bound cookie in it has expired while the browser
// goes on.
func TestChromiumBindsALibrarySession(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	store := memstore.New(memstore.Config{})
	t.Cleanup(func() { store.Close() })
	binder, err := dbsc.New(dbsc.Config{Store: store, Key: key, CookieLifetime: browserLifetime})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := cloakroom.New(cloakroom.Config{Store: store, Binding: binder.Check})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { manager.Close() })
	mux := http.NewServeMux()
	mux.Handle("/auth/dbsc/", binder.Handler(manager))
	mux.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) {
		s := manager.Session(r)
		if err := s.Login(r.Context(), "alice", cloakroom.LoginOptions{}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := binder.Offer(r.Context(), w.Header(), s); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "<!doctype html><title>signed in</title>")
	})
	mux.Handle("GET /me", manager.RequireLogin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, manager.Session(r).UserID())
	})))
	origin, cert := browsertest.ServeTLS(t, manager.Handler(mux))

	ctx := browsertest.NewWith(t, browsertest.Options{TrustSPKIPins: []string{cert.SPKIPin}, DBSC: true})
	events := browsertest.WatchDBSC(t, ctx)
	browsertest.Step(t, ctx, "sign in", chromedp.Navigate(origin+"/signin"))
	events.Wait(t, ctx, "Chromium registers the session", func(l *browsertest.DBSCLog) bool { return l.Registered() == 1 || l.Failed() > 0 })
	if events.Registered() != 1 {
		t.Fatalf("Chromium did not register: %s", events)
	}

	// The infostealer's copy, taken now, with a fresh bound cookie.
	stolen := browsertest.Cookies(t, ctx)
	copied := boundCookie(t, stolen, binder.Config().CookieName)
	thief := cert.Client(browsertest.CopyJar(t, stolen))
	if code := status(t, thief, origin+"/me"); code != http.StatusOK {
		t.Fatalf("the copied cookie store while its bound cookie lives: %d, want 200", code)
	}

	// Several lifetimes: each time the browser's bound cookie has run
	// out, the page's next request still works, on a cookie renewed with
	// a signature from the device key.
	seen := []string{copied.Value}
	for lifetime := 1; lifetime <= 3; lifetime++ {
		waitPast(t, ctx, current(t, ctx, binder).Expires)
		if got := fetch(t, ctx, "/me"); got != "200 alice" {
			t.Fatalf("lifetime %d: the page's request got %q; events: %s", lifetime, got, events)
		}
		now := current(t, ctx, binder)
		if slices.Contains(seen, now.Value) {
			t.Fatalf("lifetime %d: the browser still holds a bound cookie it had", lifetime)
		}
		seen = append(seen, now.Value)
	}
	if events.Refreshed() < 3 {
		t.Errorf("refreshes: %d, want at least 3; events: %s", events.Refreshed(), events)
	}

	// The copy's bound cookie expired long ago: refused, whatever the
	// jar says about its expiry. The browser goes on.
	if code := status(t, thief, origin+"/me"); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie store after its bound cookie expired: %d, want 401", code)
	}
	if got := fetch(t, ctx, "/me"); got != "200 alice" {
		t.Errorf("the browser after the copy was refused: %q", got)
	}
}

// boundCookie finds the bound cookie among cookies.
func boundCookie(t *testing.T, cookies []*network.Cookie, name string) *network.Cookie {
	t.Helper()
	for _, c := range cookies {
		if c.Name == name {
			return c
		}
	}
	names := make([]string, 0, len(cookies))
	for _, c := range cookies {
		names = append(names, c.Name)
	}
	t.Fatalf("no bound cookie %q in the browser: %v", name, names)
	return nil
}

// current returns the browser's bound cookie now.
func current(t *testing.T, ctx context.Context, b *dbsc.Binder) *network.Cookie {
	t.Helper()
	return boundCookie(t, browsertest.Cookies(t, ctx), b.Config().CookieName)
}

// waitPast waits until the wall clock has passed expires (seconds since
// the epoch, as CDP reports a cookie's expiry) and one second more, as the
// server rounds expiries to whole seconds: the state waited for is the
// cookie's expiry, on the clock the browser and the server share.
func waitPast(t *testing.T, ctx context.Context, expires float64) {
	t.Helper()
	deadline := time.Unix(0, int64(expires*float64(time.Second))).Add(time.Second)
	if until := time.Until(deadline); until > 2*browserLifetime {
		t.Fatalf("the bound cookie expires in %v, more than twice its lifetime", until)
	}
	select {
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// fetch runs fetch(path) in the page and returns "status body".
func fetch(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`fetch(`+fmt.Sprintf("%q", path)+`).then(async r => r.status + " " + await r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch %s: %v", path, err)
	}
	return v
}

// status sends GET url with client and returns the status.
func status(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}
