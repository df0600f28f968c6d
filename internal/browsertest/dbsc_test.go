package browsertest_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
)

// dbscStub is the least a server does for Chromium to register a device
// bound session and refresh it. It checks nothing: the harness, not the
// protocol, is under test here (package dbsc verifies the proofs).
type dbscStub struct {
	origin    string
	cookie    atomic.Int64 // the bound cookie's generation
	refreshes atomic.Int64 // refreshes that carried a proof
}

const stubAttributes = "Path=/; Secure; HttpOnly; SameSite=Lax"

func (s *dbscStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setBound := func() {
		w.Header().Add("Set-Cookie", "bound=gen"+itoa(s.cookie.Add(1))+"; Max-Age=600; "+stubAttributes)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, `{"session_identifier":"s1","refresh_url":"/refresh",`+
			`"scope":{"origin":"`+s.origin+`","include_site":false},`+
			`"credentials":[{"type":"cookie","name":"bound","attributes":"`+stubAttributes+`"}]}`)
	}
	switch r.URL.Path {
	case "/signin":
		w.Header().Add("Set-Cookie", "session=s; "+stubAttributes)
		w.Header().Set("Secure-Session-Registration", `(ES256);path="/register";challenge="c0"`)
		io.WriteString(w, "<!doctype html><title>signed in</title>")
	case "/register":
		if !strings.HasPrefix(r.Header.Get("Secure-Session-Response"), "eyJ") {
			http.Error(w, "no proof", http.StatusBadRequest)
			return
		}
		setBound()
	case "/refresh":
		if r.Header.Get("Secure-Session-Response") == "" {
			w.Header().Set("Secure-Session-Challenge", `"c1";id="s1"`)
			w.WriteHeader(http.StatusForbidden)
			return
		}
		s.refreshes.Add(1)
		setBound()
	case "/whoami":
		c, err := r.Cookie("bound")
		if err != nil {
			http.Error(w, "no bound cookie", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, c.Value)
	default:
		http.NotFound(w, r)
	}
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestDBSCHarness: a pinned test certificate is trusted, Chromium
// registers a device-bound session and refreshes it on demand, the DBSC
// log sees both, and the copied cookie store works from a Go client.
func TestDBSCHarness(t *testing.T) {
	stub := &dbscStub{}
	origin, cert := browsertest.ServeTLS(t, stub)
	stub.origin = origin
	ctx := browsertest.NewWith(t, browsertest.Options{TrustSPKIPins: []string{cert.SPKIPin}, DBSC: true})
	dbsc := browsertest.WatchDBSC(t, ctx)

	browsertest.Step(t, ctx, "sign in", chromedp.Navigate(origin+"/signin"))
	dbsc.Wait(t, ctx, "a registration", func(l *browsertest.DBSCLog) bool { return l.Registered() == 1 })

	// Chromium refreshes when the bound cookie is missing: delete it, and
	// the next request waits for a refresh and carries the new one.
	before := stub.cookie.Load()
	deleteCookie(t, ctx, origin, "bound")
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch("/whoami").then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "gen") || stub.refreshes.Load() == 0 || stub.cookie.Load() <= before {
		t.Fatalf("after deleting the bound cookie, /whoami = %q with %d refreshes; events: %s", got, stub.refreshes.Load(), dbsc)
	}
	dbsc.Wait(t, ctx, "a refresh", func(l *browsertest.DBSCLog) bool { return l.Refreshed() >= 1 })
	if dbsc.Failed() != 0 {
		t.Errorf("failed DBSC events: %s", dbsc)
	}

	// The whole cookie store, HttpOnly cookies included, into a Go client.
	cookies := browsertest.Cookies(t, ctx)
	names := map[string]bool{}
	for _, c := range cookies {
		names[c.Name] = c.HTTPOnly
	}
	if !names["bound"] || !names["session"] {
		t.Fatalf("browser cookies %v, want HttpOnly bound and session", names)
	}
	client := cert.Client(browsertest.CopyJar(t, cookies))
	res, err := client.Get(origin + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "gen") {
		t.Errorf("the copied jar: %d %q, want 200 and the bound cookie", res.StatusCode, body)
	}
}

func deleteCookie(t *testing.T, ctx context.Context, origin, name string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.DeleteCookies, network.DeleteCookiesParams{Name: name, URL: origin + "/"}); err != nil {
		t.Fatal(err)
	}
}
