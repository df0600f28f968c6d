package gateway_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// TestBrowserDeviceBoundSession drives Chromium 156, with its DBSC test
// flags, through a gateway with device binding over HTTPS: the password
// sign-in registers a device key, its requests to the API keep working across
// several 10 s bound-cookie lifetimes, and the browser's whole cookie
// store, copied into a plain HTTP client (an infostealer's copy), is
// refused once the bound cookie in it has expired, while the browser goes
// on. The clock is the real one: the browser expires its cookies by it.
func TestBrowserDeviceBoundSession(t *testing.T) {
	mem := memstore.New(memstore.Config{})
	t.Cleanup(func() { mem.Close() })
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("X-Forwarded-User"))
	}))
	t.Cleanup(api.Close)
	route, err := proxy.ParseRoute("/api/=" + api.URL)
	if err != nil {
		t.Fatal(err)
	}
	jwtKey, err := upstreamjwt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := upstreamjwt.NewSigner(jwtKey, upstreamjwt.SignerConfig{Issuer: "https://gateway.test", Audience: jwtAudience})
	if err != nil {
		t.Fatal(err)
	}
	bindingKey := make([]byte, 32)
	rand.Read(bindingKey)
	st, err := gateway.Assemble(context.Background(), gateway.Parts{
		Sessions:     cloakroom.Config{Store: mem},
		AccountStore: memaccounts.New(),
		Accounts:     accounts.Config{Throttle: memaccounts.NewThrottle(0)},
		Admission:    signin.Config{},
		Binding:      &dbsc.Config{Key: bindingKey, CookieLifetime: dbsc.MinCookieLifetime},
		Gateway:      gateway.Config{TLS: true, Signer: signer, Routes: []proxy.Route{route}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const password = "correct horse battery staple"
	if err := st.Accounts.Add(context.Background(), "alice", password, nil, ""); err != nil {
		t.Fatal(err)
	}
	origin, cert := browsertest.ServeTLS(t, st.Gateway.Handler())
	boundName := st.Binder.Config().CookieName

	ctx := browsertest.NewWith(t, browsertest.Options{TrustSPKIPins: []string{cert.SPKIPin}, DBSC: true})
	events := browsertest.WatchDBSC(t, ctx)
	browsertest.Step(t, ctx, "sign in",
		chromedp.Navigate(origin+"/auth/login?return_to=%2Fauth%2Faccount"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("devices")))
	events.Wait(t, ctx, "Chromium registers the session", func(l *browsertest.DBSCLog) bool { return l.Registered() == 1 || l.Failed() > 0 })
	if events.Registered() != 1 {
		t.Fatalf("Chromium did not register: %s", events)
	}
	browsertest.Step(t, ctx, "account page", chromedp.Navigate(origin+"/auth/account"), chromedp.WaitVisible(chromedp.ID("devices")))
	if row, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#devices tbody tr").innerText`)); err != nil || !strings.Contains(row, "bound to its device") {
		t.Errorf("the account page's row for this browser: %q (%v), want it shown bound to its device", row, err)
	}

	// The infostealer's copy of the whole store, with a fresh bound cookie.
	stolen := browsertest.Cookies(t, ctx)
	copied := namedCookie(t, stolen, boundName)
	thief := cert.Client(browsertest.CopyJar(t, stolen))
	if code := getStatus(t, thief, origin+"/api/me"); code != http.StatusOK {
		t.Fatalf("the copied cookie store while its bound cookie lives: %d, want 200", code)
	}

	// Several lifetimes: each time the browser's bound cookie has run
	// out, the page's next call still works, on a new bound cookie.
	seen := []string{copied.Value}
	for lifetime := 1; lifetime <= 3; lifetime++ {
		waitUntilExpired(t, ctx, namedCookie(t, browsertest.Cookies(t, ctx), boundName).Expires)
		if got := pageOpen(t, ctx, origin, "/api/me"); got != "200 alice" {
			t.Fatalf("lifetime %d: the page got %q; events: %s", lifetime, got, events)
		}
		now := namedCookie(t, browsertest.Cookies(t, ctx), boundName)
		if slices.Contains(seen, now.Value) {
			t.Fatalf("lifetime %d: the browser still holds a bound cookie it had", lifetime)
		}
		seen = append(seen, now.Value)
	}
	if n := events.Refreshed(); n < 3 {
		t.Errorf("refreshes: %d, want at least 3; events: %s", n, events)
	}

	// The copy's bound cookie expired long ago: refused. The browser,
	// which renewed its own, goes on.
	if code := getStatus(t, thief, origin+"/api/me"); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie store after its bound cookie expired: %d, want 401", code)
	}
	if got := pageOpen(t, ctx, origin, "/api/me"); got != "200 alice" {
		t.Errorf("the browser after the copy was refused: %q", got)
	}
	if n, _ := events.Ended(); n != 0 || events.Failed() != 0 {
		t.Errorf("Chromium reports failures or an ended session: %s", events)
	}
}

// namedCookie finds the cookie called name among cookies.
func namedCookie(t *testing.T, cookies []*network.Cookie, name string) *network.Cookie {
	t.Helper()
	names := make([]string, 0, len(cookies))
	for _, c := range cookies {
		if c.Name == name {
			return c
		}
		names = append(names, c.Name)
	}
	t.Fatalf("no cookie %q in the browser: %v", name, names)
	return nil
}

// waitUntilExpired waits until the wall clock has passed expires (seconds
// since the epoch, as CDP reports a cookie's expiry) by a second, since
// the gateway rounds expiries to whole seconds: the state waited for is
// the cookie's expiry, on the clock the browser and the gateway share.
func waitUntilExpired(t *testing.T, ctx context.Context, expires float64) {
	t.Helper()
	deadline := time.Unix(0, int64(expires*float64(time.Second))).Add(time.Second)
	if until := time.Until(deadline); until > 2*dbsc.MinCookieLifetime {
		t.Fatalf("the bound cookie expires in %v, more than twice its lifetime", until)
	}
	select {
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// pageOpen opens path in the tab (the gateway's own pages forbid fetch
// from script) and returns "status body".
func pageOpen(t *testing.T, ctx context.Context, origin, path string) string {
	t.Helper()
	res, err := chromedp.RunResponse(ctx, chromedp.Navigate(origin+path))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return fmt.Sprintf("%d %s", res.Status, strings.TrimSpace(body))
}

// getStatus sends GET url as a JSON client and returns the status.
func getStatus(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}
