package forwardauth_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/browsertest"
	"github.com/cloakroom/cloakroom/signin"
)

// pageApp is a protected app with pages: it shows the identity and the
// cookies it received, sets a cookie of its own, and records every Cookie
// header that reached it.
type pageApp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	cookies []string // every Cookie header received, in order
}

func newPageApp(t *testing.T) *pageApp {
	a := &pageApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookie := strings.Join(r.Header.Values("Cookie"), "; ")
		a.mu.Lock()
		a.cookies = append(a.cookies, cookie)
		a.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "theme", Value: "dark", Path: "/"})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Reports</title><p id="user">%s</p><p id="email">%s</p><p id="cookies">%s</p>`,
			html.EscapeString(r.Header.Get("X-Forwarded-User")), html.EscapeString(r.Header.Get("X-Forwarded-Email")), html.EscapeString(cookie))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *pageApp) received() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.cookies...)
}

// A real Chromium through the documented nginx configuration, on
// http://localhost (where Chromium keeps __Host- cookies on plain http):
// a protected page sends it to cloakroom's sign-in page on the same
// origin, signing in lands back on that page with the identity, logging
// out through nginx ends access, and the app never gets the session
// cookie or the known-device cookie, only its own.
func TestBrowserThroughNginx(t *testing.T) {
	ctx := browsertest.New(t)
	s := newStack(t, nil, nil)
	if err := s.st.Accounts.Add(context.Background(), "carol", password, []string{"dev"}, "carol@example.com"); err != nil {
		t.Fatal(err)
	}
	app := newPageApp(t)
	base := strings.Replace(startNginx(t, s, app.srv.URL), "127.0.0.1", "localhost", 1)

	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById(`+"`"+id+"`"+`)?.innerText ?? ""`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	browserCookies := func() map[string]bool {
		t.Helper()
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, c := range res.Cookies {
			names[c.Name] = true
		}
		return names
	}

	browsertest.Step(t, ctx, "protected page", chromedp.Navigate(base+"/reports?year=2025"), chromedp.WaitVisible(chromedp.ID("login-form")))
	if got, want := location(), base+"/auth/login?return_to=%2Freports%3Fyear%3D2025"; got != want {
		t.Fatalf("redirected to %s, want %s", got, want)
	}
	if got := app.received(); len(got) != 0 {
		t.Fatalf("the app was reached before sign-in: %q", got)
	}

	browsertest.Step(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("username"), "carol"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("user")))
	if got, want := location(), base+"/reports?year=2025"; got != want {
		t.Fatalf("after sign-in at %s, want %s", got, want)
	}
	if user, email := text("user"), text("email"); user != "carol" || email != "carol@example.com" {
		t.Fatalf("the app shows user %q, email %q; want carol", user, email)
	}
	// The browser holds the session and device cookies, and the app's.
	if held := browserCookies(); !held[cookieName] || !held[signin.DeviceCookie] || !held["theme"] {
		t.Fatalf("the browser holds %v; want the session, device and theme cookies", held)
	}
	// Again: the app gets its own cookie, only.
	browsertest.Step(t, ctx, "the page again", chromedp.Navigate(base+"/reports"), chromedp.WaitVisible(chromedp.ID("user")))
	if got := text("cookies"); got != "theme=dark" {
		t.Errorf("the app got cookies %q; want theme=dark only", got)
	}

	browsertest.Step(t, ctx, "log out through nginx",
		chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(chromedp.ID("logout")),
		chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if left, err := s.st.Sessions.Devices(context.Background(), "carol"); err != nil || len(left) != 0 {
		t.Fatalf("sessions left after logout: %d (%v)", len(left), err)
	}
	reached := len(app.received())
	browsertest.Step(t, ctx, "protected again", chromedp.Navigate(base+"/reports"), chromedp.WaitVisible(chromedp.ID("login-form")))
	if got, want := location(), base+"/auth/login?return_to=%2Freports"; got != want {
		t.Errorf("after logout, the page sends to %s, want %s", got, want)
	}
	if got := app.received(); len(got) != reached {
		t.Errorf("the app was reached after logout: %q", got[reached:])
	}

	got := app.received()
	if len(got) == 0 {
		t.Fatal("the app was never reached")
	}
	for _, c := range got {
		if strings.Contains(c, cookieName) || strings.Contains(c, signin.DeviceCookie) {
			t.Errorf("the app got the Cookie header %q", c)
		}
	}
}
