package browsertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"

	"github.com/cloakroom/cloakroom/internal/localtls"
)

// Chromium's --enable-features values for Device Bound Session Credentials
// on Linux, where no TPM backs the keys: DBSC itself and software keys
// ("for manual testing": ES256 only, no security guarantee).
// DBSCFeaturesNoQuota also turns off the signing quota (6 signatures per
// site in 9 minutes), a switch Chromium keeps for testing.
const (
	DBSCFeatures        = "DeviceBoundSessions,EnableBoundSessionCredentialsSoftwareKeysForManualTesting"
	DBSCFeaturesNoQuota = "DeviceBoundSessions:RefreshQuota/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting"
)

// ServeTLS serves h over HTTPS (HTTP/2 and HTTP/1.1) on a free loopback
// port until the test ends, with a fresh certificate. It returns the
// origin, https://localhost:PORT, and the certificate: pass its SPKIPin in
// Options.TrustSPKIPins, and use its Client for requests from Go.
func ServeTLS(t testing.TB, h http.Handler) (string, *localtls.Cert) {
	t.Helper()
	cert, err := localtls.New()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         cert.ServerConfig(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return fmt.Sprintf("https://localhost:%d", ln.Addr().(*net.TCPAddr).Port), cert
}

// Cookies returns every cookie of the browser context of ctx, HttpOnly
// ones included, with their values: what malware that copies the
// browser's cookie store takes (CDP Storage.getCookies).
func Cookies(t testing.TB, ctx context.Context) []*network.Cookie {
	t.Helper()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	// On the browser endpoint, naming the tab's browser context: a page
	// target answers for the default context only.
	res, err := chromedp.CallBrowser(ctx, storage.GetCookies, storage.GetCookiesParams{
		BrowserContextID: chromedp.FromContext(ctx).BrowserContextID,
	})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	return res.Cookies
}

// CopyJar returns a cookie jar holding copies of cookies, as a copy of the
// cookie store taken to another machine would. The copies carry no expiry:
// a thief replays a value whatever its Max-Age said, so a test that uses
// the jar checks that the server, not the client, refuses what expired.
func CopyJar(t testing.TB, cookies []*network.Cookie) http.CookieJar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		host := strings.TrimPrefix(c.Domain, ".")
		u := &url.URL{Scheme: "https", Host: host, Path: c.Path}
		copied := &http.Cookie{Name: c.Name, Value: c.Value, Path: c.Path, Secure: c.Secure, HttpOnly: c.HTTPOnly}
		if strings.HasPrefix(c.Domain, ".") {
			copied.Domain = host
		}
		jar.SetCookies(u, []*http.Cookie{copied})
	}
	return jar
}

// DBSCLog records the device-bound-session events Chromium reports for a
// tab (CDP Network.deviceBoundSessionEventOccurred): registrations,
// refreshes, challenges and ends, with Chromium's reason when it refused
// something the server sent, which it otherwise does silently.
type DBSCLog struct {
	mu      sync.Mutex
	events  []*network.EventDeviceBoundSessionEventOccurred
	changed chan struct{} // closed and replaced on every event
}

// WatchDBSC starts recording the DBSC events of the tab of ctx until the
// test ends.
func WatchDBSC(t testing.TB, ctx context.Context) *DBSCLog {
	t.Helper()
	log := &DBSCLog{changed: make(chan struct{})}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	target := chromedp.FromContext(ctx).Target
	// cdp.Events subscribes when called: before enabling, so that no
	// event falls in between.
	events := cdp.Events(ctx, target, network.DeviceBoundSessionEventOccurred)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			log.add(&ev)
		}
	}()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("watch DBSC: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.EnableDeviceBoundSessions, network.EnableDeviceBoundSessionsParams{Enable: true}); err != nil {
		t.Fatalf("watch DBSC: %v", err)
	}
	return log
}

func (l *DBSCLog) add(ev *network.EventDeviceBoundSessionEventOccurred) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Events returns the events so far.
func (l *DBSCLog) Events() []*network.EventDeviceBoundSessionEventOccurred {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*network.EventDeviceBoundSessionEventOccurred(nil), l.events...)
}

// Registered returns how many sessions Chromium registered.
func (l *DBSCLog) Registered() int {
	return l.count(func(ev *network.EventDeviceBoundSessionEventOccurred) bool {
		return ev.Succeeded && ev.CreationEventDetails != nil
	})
}

// Refreshed returns how many refreshes succeeded (bound cookie renewed).
func (l *DBSCLog) Refreshed() int {
	return l.count(func(ev *network.EventDeviceBoundSessionEventOccurred) bool {
		return ev.Succeeded && ev.RefreshEventDetails != nil
	})
}

// Failed returns how many events Chromium reports as failures: a refused
// registration, a refresh that did not renew the cookie.
func (l *DBSCLog) Failed() int {
	return l.count(func(ev *network.EventDeviceBoundSessionEventOccurred) bool { return !ev.Succeeded })
}

// Ended returns how many sessions Chromium dropped, and the last reason.
func (l *DBSCLog) Ended() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, reason := 0, ""
	for _, ev := range l.events {
		if ev.TerminationEventDetails != nil {
			n++
			reason = string(ev.TerminationEventDetails.DeletionReason)
		}
	}
	return n, reason
}

func (l *DBSCLog) count(match func(*network.EventDeviceBoundSessionEventOccurred) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if match(ev) {
			n++
		}
	}
	return n
}

// ErrWait is what Wait reports when the condition did not come true.
var ErrWait = errors.New("the browser's DBSC state did not come")

// Wait waits until cond, checked after every event, is true, up to
// Timeout or the end of ctx. It fails the test with what, and the events
// seen, when it is not.
func (l *DBSCLog) Wait(t testing.TB, ctx context.Context, what string, cond func(*DBSCLog) bool) {
	t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if cond(l) {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%v: %s; events: %s", ErrWait, what, l)
		case <-ctx.Done():
			t.Fatalf("%v: %s (%v); events: %s", ErrWait, what, ctx.Err(), l)
		}
	}
}

// String summarises the events, one line each, for failure messages.
func (l *DBSCLog) String() string {
	var b strings.Builder
	for _, ev := range l.Events() {
		b.WriteString("\n  ")
		switch {
		case ev.CreationEventDetails != nil:
			fmt.Fprintf(&b, "registration %s", ev.CreationEventDetails.FetchResult)
		case ev.RefreshEventDetails != nil:
			fmt.Fprintf(&b, "refresh %s/%s proactive=%v", ev.RefreshEventDetails.RefreshResult, ev.RefreshEventDetails.FetchResult, ev.RefreshEventDetails.WasFullyProactiveRefresh)
		case ev.ChallengeEventDetails != nil:
			fmt.Fprintf(&b, "challenge %s", ev.ChallengeEventDetails.ChallengeResult)
		case ev.TerminationEventDetails != nil:
			fmt.Fprintf(&b, "end %s", ev.TerminationEventDetails.DeletionReason)
		default:
			j, _ := json.Marshal(ev)
			b.Write(j)
		}
		fmt.Fprintf(&b, " (session %q)", ev.SessionID)
	}
	return b.String()
}
