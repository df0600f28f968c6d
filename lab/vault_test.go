package lab

import (
	"bytes"
	"context"
	"net/http"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/lab/attacker"
)

// testVaultMode runs the attack against the jwt app, page and API
// unchanged, behind the gateway in vault mode.
func testVaultMode(t *testing.T, browser, guest context.Context, l *Lab) {
	// (1) The attacker, signed in as a guest, stores the payload.
	signIn(t, guest, l.VaultURL, l.Guest)
	postComment(t, guest, l.Comment)

	// (2)-(6) The admin signs in with the app's own login; the page shows
	// the comment.
	admin := newPerson(t, browser)
	before := len(l.attacker.Loot())
	signIn(t, admin, l.VaultURL, l.Admin)
	loot := waitForNewLoot(t, l, l.VaultURL, before)
	rep := loot.Report
	// The payload cannot even learn who the victim is: the placeholder is
	// not JWT-shaped, so it calls /api/me without it, and the cookie alone
	// attaches nothing.
	if rep.Me == nil || rep.Me.Status != http.StatusUnauthorized {
		t.Errorf("payload's /api/me from the page: %+v, want 401", rep.Me)
	}
	if rep.AdminCall == nil || rep.AdminCall.Status != http.StatusUnauthorized {
		t.Errorf("payload's generic admin call from the page: %+v, want 401", rep.AdminCall)
	}

	// The page stored what the login answer's token field held: the
	// session's placeholder, not the JWT.
	stored := eval[string](t, admin, `localStorage.getItem("guestbook.token")`)
	if !strings.HasPrefix(stored, "cloakroom-vault.") {
		t.Fatalf("the page stored %q, want the vault's placeholder", stored)
	}
	cookie := vaultCookie(t, admin, l)
	if cookie == nil || !cookie.HTTPOnly || !cookie.Secure {
		t.Fatalf("vault session cookie: %+v", cookie)
	}
	// Step 6 finds no usable token: no JWT anywhere in what the payload
	// sent, and not the cookie.
	if rep.Cookie != "" || bytes.Contains(loot.Body, []byte("eyJ")) || bytes.Contains(loot.Body, []byte(cookie.Value)) {
		t.Fatalf("the payload sent a JWT or the cookie: %s", loot.Body)
	}
	if rep.LocalStorage["guestbook.token"] != stored {
		t.Errorf("the collector received %q, want the placeholder", rep.LocalStorage["guestbook.token"])
	}

	// (7) Nothing stolen works from the attacker's machine.
	stolen := stolenStrings(loot)
	if len(stolen) < 3 || !contains(stolen, stored) {
		t.Fatalf("strings collected: %q", stolen)
	}
	for _, s := range stolen {
		for name, h := range map[string]http.Header{
			"as the session cookie": {"Cookie": {VaultSessionCookie + "=" + s}},
			"as a bearer token":     {"Authorization": {"Bearer " + s}},
			"in the query":          nil,
		} {
			url := l.VaultURL + "/api/admin/users"
			if h == nil {
				url += "?access_token=" + neturl.QueryEscape(s)
			}
			if code := plainRequest(t, "GET", url, h); code != http.StatusUnauthorized {
				t.Errorf("replaying %q %s: got %d, want 401", s, name, code)
			}
		}
	}
	// The cookie copied from the browser store grants nothing alone; with
	// the placeholder it is the real credential while the session lives.
	withCookie := http.Header{"Cookie": {VaultSessionCookie + "=" + cookie.Value}}
	if code := plainRequest(t, "GET", l.VaultURL+"/api/admin/users", withCookie); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie alone: got %d, want 401", code)
	}
	both := http.Header{"Cookie": withCookie["Cookie"], "Authorization": {"Bearer " + stored}}
	if code := plainRequest(t, "GET", l.VaultURL+"/api/admin/users", both); code != http.StatusOK {
		t.Fatalf("cookie and placeholder before sign-out: got %d, want 200", code)
	}
	// The honest limit: script in the open page can use the placeholder
	// with the page's cookie.
	if code := pageFetch(t, admin, `"/api/admin/users", {headers: {"Authorization": "Bearer " + localStorage.getItem("guestbook.token")}}`); code != http.StatusOK {
		t.Errorf("same-origin call with the placeholder: got %d, want 200", code)
	}

	// Forged cross-site requests: refused by the gateway, nothing deleted.
	checkForgeries(t, admin, l, "vault", l.vaultLog, l.vaultApp, http.StatusForbidden)

	// The app's sign-out only clears localStorage: the cookie, in the
	// browser or copied, no longer reaches the admin's token.
	signOut(t, admin)
	if code := pageFetch(t, admin, `"/api/admin/users"`); code != http.StatusUnauthorized {
		t.Errorf("the signed-out page's call: got %d, want 401", code)
	}
	if code := plainRequest(t, "GET", l.VaultURL+"/api/admin/users", withCookie); code != http.StatusUnauthorized {
		t.Errorf("the copied cookie after sign-out: got %d, want 401", code)
	}
	// The limit, stated in docs/threat-model.md: the session lives until
	// its idle timeout, so the cookie together with the stolen
	// placeholder still works until then.
	if code := plainRequest(t, "GET", l.VaultURL+"/api/admin/users", both); code != http.StatusOK {
		t.Errorf("cookie and placeholder after the page's sign-out: got %d, want 200 (the documented limit)", code)
	}
	// Every response the gateway let through was checked; the JWT never
	// crossed it toward the browser.
	for _, r := range l.vaultLog.snapshot() {
		if r.Status >= 500 {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
	}
	// The attacker's own page says so too (no screenshot kept).
	run(t, guest, chromedp.Navigate(l.AttackerURL+"/?target=vault"))
	waitFor(t, guest, `document.body.innerText.includes("Nothing stolen works from here")`)
}

// waitForNewLoot polls the collector for a report from a page of origin
// received after the first skip reports.
func waitForNewLoot(t *testing.T, l *Lab, origin string, skip int) attacker.Loot {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		loot := l.attacker.Loot()
		for _, lt := range loot[min(skip, len(loot)):] {
			if lt.Report != nil && strings.HasPrefix(lt.Report.Page, origin+"/") {
				return lt
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new report from a page of %s reached the collector", origin)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pageFetch runs fetch(args) in the page and returns the status.
func pageFetch(t *testing.T, ctx context.Context, args string) int {
	t.Helper()
	eval[int](t, ctx, `(window.labStatus = 0, fetch(`+args+`).then(r => { window.labStatus = r.status; }), 0)`)
	waitFor(t, ctx, `window.labStatus !== 0`)
	return eval[int](t, ctx, `window.labStatus`)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// vaultCookie reads the vault app's session cookie from the browser's
// cookie store, or nil.
func vaultCookie(t *testing.T, ctx context.Context, l *Lab) *network.Cookie {
	t.Helper()
	for _, c := range cookies(t, ctx, l.VaultURL) {
		if c.Name == VaultSessionCookie {
			return c
		}
	}
	return nil
}

func cookies(t *testing.T, ctx context.Context, url string) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Cookies
}
