package dbsc_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/dbsc/dbsctest"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/storetest"
)

const lifetime = 10 * time.Second

// app is a small application using the library directly: a manager whose
// binding hook is the binder's, a sign-in that offers registration, and a
// page that needs a logged-in session.
type app struct {
	t       *testing.T
	clock   *storetest.Clock
	store   cloakroom.Store
	manager *cloakroom.Manager
	binder  *dbsc.Binder
	srv     *httptest.Server
	logs    *syncbuf.Buffer
}

func newApp(t *testing.T, store storeCase, edit func(*dbsc.Config)) *app {
	t.Helper()
	a := &app{t: t, clock: storetest.NewClock(storetest.Start), logs: &syncbuf.Buffer{}}
	a.store = store.open(t, a.clock)
	logger := slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	key := make([]byte, 32)
	rand.Read(key)
	cfg := dbsc.Config{Store: a.store, Key: key, CookieLifetime: lifetime, Now: a.clock.Now, Logger: logger}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	if a.binder, err = dbsc.New(cfg); err != nil {
		t.Fatal(err)
	}
	a.manager, err = cloakroom.New(cloakroom.Config{Store: a.store, Now: a.clock.Now, Logger: logger, Binding: a.binder.Check})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.manager.Close() })
	mux := http.NewServeMux()
	endpoints := a.binder.Handler(a.manager)
	mux.Handle("/auth/dbsc/", endpoints)
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := a.manager.Session(r)
		if err := s.Login(r.Context(), r.URL.Query().Get("user"), cloakroom.LoginOptions{}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := a.binder.Offer(r.Context(), w.Header(), s); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = a.manager.Session(r).Logout(r.Context())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s := a.manager.Session(r)
		switch {
		case s.BindingErr() != nil:
			http.Error(w, "unbound: "+s.BindingErr().Error(), http.StatusUnauthorized)
		case !s.LoggedIn():
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
		default:
			fmt.Fprint(w, s.UserID())
		}
	})
	a.srv = httptest.NewTLSServer(a.manager.Handler(mux))
	t.Cleanup(a.srv.Close)
	return a
}

// client returns a browser with a device key of alg.
func (a *app) client(alg string) *dbsctest.Client {
	a.t.Helper()
	key, err := dbsctest.NewKey(alg)
	if err != nil {
		a.t.Fatal(err)
	}
	c := dbsctest.New(a.srv.URL, a.srv.Client(), key)
	c.Now = a.clock.Now
	return c
}

// login signs user in on c; a client with Register on registers.
func (a *app) login(c *dbsctest.Client, user string) *dbsctest.Response {
	a.t.Helper()
	r, err := c.Do(context.Background(), http.MethodPost, "/login?user="+user, nil, nil)
	if err != nil || r.Status != http.StatusOK {
		a.t.Fatalf("login: %v %+v", err, r)
	}
	return r
}

// page fetches / and returns the status.
func (a *app) page(c *dbsctest.Client) int {
	a.t.Helper()
	r, err := c.Get(context.Background(), "/")
	if err != nil {
		a.t.Fatalf("GET /: %v", err)
	}
	return r.Status
}

// replay sends GET / with exactly the cookies of jar, from a plain client
// on another machine: no key, no refresh.
func (a *app) replay(jar map[string]string) int {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.srv.URL+"/", nil)
	for name, value := range jar {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// post sends a raw POST with c's cookies and the given headers.
func post(t *testing.T, c *dbsctest.Client, path string, headers ...string) *dbsctest.Response {
	t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	r, err := c.Do(context.Background(), http.MethodPost, path, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// offer returns the registration challenge of a sign-in response.
func offer(t *testing.T, r *dbsctest.Response) dbsc.Registration {
	t.Helper()
	regs, err := dbsc.ParseRegistration(r.Header.Get(dbsc.HeaderRegistration))
	if err != nil || len(regs) != 1 {
		t.Fatalf("no registration offered: %v %q", err, r.Header.Get(dbsc.HeaderRegistration))
	}
	return regs[0]
}

func sf(s string) string { return `"` + s + `"` }

// TestBinderOnEveryStore runs the binder's scenarios with the Go client
// on every store.
func TestBinderOnEveryStore(t *testing.T) {
	for _, store := range everyStore(t) {
		t.Run(store.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, store) })
			}
		})
	}
}

var scenarios = []struct {
	name string
	run  func(t *testing.T, store storeCase)
}{
	{"RegisterAndRefresh", testRegisterAndRefresh},
	{"WrongKey", testWrongKey},
	{"ReplayedChallenge", testReplayedChallenge},
	{"ChallengeOfAnotherSession", testChallengeOfAnotherSession},
	{"SecondRegistration", testSecondRegistration},
	{"ConcurrentRegistrations", testConcurrentRegistrations},
	{"RefreshAfterLogout", testRefreshAfterLogout},
	{"RegistrationAfterWindow", testRegistrationAfterWindow},
	{"ConcurrentTabs", testConcurrentTabs},
	{"CopiedCookieJar", testCopiedCookieJar},
}

// The client registers at sign-in and keeps its session working across
// several bound-cookie lifetimes; the session token never changes and a
// refresh after the first uses the challenge the previous one sent.
func testRegisterAndRefresh(t *testing.T, store storeCase) {
	for _, alg := range []string{dbsc.AlgES256, dbsc.AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			a := newApp(t, store, nil)
			c := a.client(alg)
			// Chromium's raw header values with one key, the
			// specification's sf-strings with the other.
			c.Quoted = alg == dbsc.AlgRS256
			a.login(c, "alice")
			s := c.Session()
			if s == nil || len(s.Cookies) != 1 || s.Cookies[0] != dbsc.DefaultCookieName {
				t.Fatalf("not registered: %+v\n%s", s, a.logs)
			}
			if _, ok := c.Cookie(dbsc.DefaultCookieName); !ok {
				t.Fatal("the registration set no bound cookie")
			}
			session, _ := c.Cookie(cloakroom.DefaultCookieName)
			devices, err := a.manager.Devices(context.Background(), "alice")
			if err != nil || len(devices) != 1 || !devices[0].Bound || devices[0].Handle != s.ID {
				t.Fatalf("devices = %+v, %v; want one bound session named by the session identifier", devices, err)
			}
			for i := range 4 {
				if got := a.page(c); got != http.StatusOK {
					t.Fatalf("round %d: status %d\n%s", i, got, a.logs)
				}
				a.clock.Advance(lifetime)
			}
			if got := a.page(c); got != http.StatusOK {
				t.Fatalf("after the last lifetime: %d", got)
			}
			_, refreshes := c.Counts()
			// The first refresh asks for a challenge (two requests), the
			// others sign the one the previous refresh sent.
			if refreshes != 2+3 {
				t.Fatalf("%d refresh requests over 4 refreshes, want 5", refreshes)
			}
			if now, _ := c.Cookie(cloakroom.DefaultCookieName); now != session {
				t.Fatal("a refresh rotated the session token")
			}
			_, _, absolute := sessionTimes(t, a, "alice")
			if !absolute.Equal(storetest.Start.Add(cloakroom.DefaultAbsoluteTimeout)) {
				t.Fatalf("absolute deadline moved to %v", absolute)
			}
		})
	}
}

func sessionTimes(t *testing.T, a *app, user string) (created, idle, absolute time.Time) {
	devices, err := a.manager.Devices(context.Background(), user)
	if err != nil || len(devices) != 1 {
		t.Fatalf("devices: %v %v", devices, err)
	}
	d := devices[0]
	return d.CreatedAt, d.IdleExpiry, d.AbsoluteExpiry
}

// A refresh signed by another key is refused: no bound cookie, and the
// client drops the session; the request then fails for lack of one.
func testWrongKey(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	other, _ := dbsctest.NewKey(dbsc.AlgES256)
	c.SetKey(other)
	a.clock.Advance(lifetime)
	before, _ := c.Cookie(dbsc.DefaultCookieName)
	if _, err := c.Get(context.Background(), "/"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a refresh signed by another key: %v", err)
	}
	if c.Session() != nil {
		t.Fatal("the client kept a session the server refused")
	}
	if after, _ := c.Cookie(dbsc.DefaultCookieName); after != before && after != "" {
		t.Fatal("a bound cookie was issued for a proof by another key")
	}
	if got := a.page(c); got != http.StatusUnauthorized {
		t.Fatalf("after a refused refresh: %d", got)
	}
	if !strings.Contains(a.logs.String(), "outcome=signature") {
		t.Fatalf("the refusal is not logged as a signature failure:\n%s", a.logs)
	}
}

// A proof over a challenge already used gets no bound cookie, only a new
// challenge.
func testReplayedChallenge(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	ctx := context.Background()
	r, err := c.RefreshWith(ctx, "")
	if err != nil || r.Status != http.StatusForbidden {
		t.Fatalf("refresh without a proof: %v %+v", err, r)
	}
	chs, err := dbsc.ParseChallenges(r.Header.Get(dbsc.HeaderChallenge))
	if err != nil || len(chs) != 1 || chs[0].SessionID != c.Session().ID {
		t.Fatalf("challenge header %q: %v", r.Header.Get(dbsc.HeaderChallenge), err)
	}
	proof, err := c.Key().Proof(chs[0].Challenge, dbsctest.ProofOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := c.RefreshWith(ctx, proof); r.Status != http.StatusOK || !setsCookie(r, dbsc.DefaultCookieName) {
		t.Fatalf("first use: %d %s", r.Status, r.Body)
	}
	r, _ = c.RefreshWith(ctx, proof)
	if r.Status != http.StatusForbidden || setsCookie(r, dbsc.DefaultCookieName) || r.Header.Get(dbsc.HeaderChallenge) == "" {
		t.Fatalf("replay: %d %v %s", r.Status, r.Header, r.Body)
	}
}

func setsCookie(r *dbsctest.Response, name string) bool {
	for _, line := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(line, name+"=") {
			return true
		}
	}
	return false
}

// The registration challenge of session A, signed properly, does not
// register session B (B's cookie, A's challenge): challenges belong to
// the session they were issued to. A's own registration then works.
func testChallengeOfAnotherSession(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	alice, mallory := a.client(dbsc.AlgES256), a.client(dbsc.AlgES256)
	alice.Register, mallory.Register = false, false
	aliceOffer := offer(t, a.login(alice, "alice"))
	a.login(mallory, "mallory")
	proof, _ := mallory.Key().Proof(aliceOffer.Challenge, dbsctest.ProofOptions{WithJWK: true})
	if r := post(t, mallory, aliceOffer.Path, dbsc.HeaderResponse, sf(proof)); r.Status != http.StatusBadRequest {
		t.Fatalf("another session's challenge: %d %s", r.Status, r.Body)
	}
	proof, _ = alice.Key().Proof(aliceOffer.Challenge, dbsctest.ProofOptions{WithJWK: true})
	if r := post(t, alice, aliceOffer.Path, dbsc.HeaderResponse, sf(proof)); r.Status != http.StatusOK {
		t.Fatalf("alice's own registration: %d %s", r.Status, r.Body)
	}
	if d, _ := a.manager.Devices(context.Background(), "mallory"); len(d) != 1 || d[0].Bound {
		t.Fatalf("mallory's session: %+v", d)
	}
}

// A session registers once: a second registration, with the same
// challenge or another key, is refused and leaves the first key bound.
func testSecondRegistration(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	c.Register = false
	reg := offer(t, a.login(c, "alice"))
	proof, _ := c.Key().Proof(reg.Challenge, dbsctest.ProofOptions{WithJWK: true})
	if r := post(t, c, reg.Path, dbsc.HeaderResponse, sf(proof)); r.Status != http.StatusOK {
		t.Fatalf("first registration: %d %s", r.Status, r.Body)
	}
	other, _ := dbsctest.NewKey(dbsc.AlgRS256)
	again, _ := other.Proof(reg.Challenge, dbsctest.ProofOptions{WithJWK: true})
	for _, p := range []string{proof, again} {
		// The bound cookie of the first registration comes along, as a
		// browser would send it.
		if r := post(t, c, reg.Path, dbsc.HeaderResponse, sf(p)); r.Status != http.StatusConflict {
			t.Fatalf("second registration: %d %s", r.Status, r.Body)
		}
	}
	// The bound key is still the first: a refresh signed by it works.
	d, _ := a.manager.Devices(context.Background(), "alice")
	id := sf(d[0].Handle)
	r := post(t, c, "/auth/dbsc/refresh", dbsc.HeaderSessionID, id)
	chs, err := dbsc.ParseChallenges(r.Header.Get(dbsc.HeaderChallenge))
	if r.Status != http.StatusForbidden || err != nil {
		t.Fatalf("challenge: %d %v", r.Status, err)
	}
	proof, _ = c.Key().Proof(chs[0].Challenge, dbsctest.ProofOptions{})
	if r := post(t, c, "/auth/dbsc/refresh", dbsc.HeaderSessionID, id, dbsc.HeaderResponse, sf(proof)); r.Status != http.StatusOK {
		t.Fatalf("refresh by the first key: %d %s", r.Status, r.Body)
	}
}

// A refresh of a session that has ended (logout, revocation) answers
// continue false, and the client stops refreshing.
func testRefreshAfterLogout(t *testing.T, store storeCase) {
	for _, end := range []string{"logout", "revoke"} {
		t.Run(end, func(t *testing.T) {
			a := newApp(t, store, nil)
			c := a.client(dbsc.AlgES256)
			a.login(c, "alice")
			id := c.Session().ID
			jar := c.Jar() // the session cookie, kept past the logout
			if end == "logout" {
				post(t, c, "/logout")
			} else if err := a.manager.RevokeUser(context.Background(), "alice"); err != nil {
				t.Fatal(err)
			}
			tab := a.client(dbsc.AlgES256)
			for name, v := range jar {
				tab.SetCookie(name, v)
			}
			r, err := tab.Do(context.Background(), http.MethodPost, "/auth/dbsc/refresh", nil, http.Header{dbsc.HeaderSessionID: {sf(id)}})
			if err != nil || r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"session_identifier":"`+id+`","continue":false}` {
				t.Fatalf("refresh of an ended session: %v %d %s", err, r.Status, r.Body)
			}
			if end == "revoke" {
				a.clock.Advance(lifetime)
				if err := c.Refresh(context.Background()); err != nil || c.Session() != nil {
					t.Fatalf("client refresh after revocation: %v, session %+v", err, c.Session())
				}
			}
		})
	}
}

// A registration after the window closes is refused, even with the
// sign-in's own challenge: a session that missed it stays unbound and
// keeps working.
func testRegistrationAfterWindow(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	c.Register = false
	reg := offer(t, a.login(c, "alice"))
	a.clock.Advance(dbsc.DefaultRegistrationWindow)
	proof, _ := c.Key().Proof(reg.Challenge, dbsctest.ProofOptions{WithJWK: true})
	if r := post(t, c, reg.Path, dbsc.HeaderResponse, sf(proof)); r.Status != http.StatusBadRequest {
		t.Fatalf("late registration: %d %s", r.Status, r.Body)
	}
	if got := a.page(c); got != http.StatusOK {
		t.Fatalf("the unbound session: %d", got)
	}
	if d, _ := a.manager.Devices(context.Background(), "alice"); d[0].Bound {
		t.Fatal("bound after the window")
	}
}

// Several tabs refreshing at once, each with its own challenge, all get
// a bound cookie.
func testConcurrentTabs(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	a.clock.Advance(lifetime)
	const tabs = 8
	errs := make([]error, tabs)
	clients := make([]*dbsctest.Client, tabs)
	var wg sync.WaitGroup
	for i := range tabs {
		clients[i] = c.Clone()
		wg.Go(func() {
			r, err := clients[i].Get(context.Background(), "/")
			if err == nil && r.Status != http.StatusOK {
				err = fmt.Errorf("status %d", r.Status)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%v\n%s", err, a.logs)
	}
}

// An infostealer copies the whole cookie jar (the session cookie and the
// bound cookie): the copy works until the bound cookie expires, then is
// refused (401, the session not ended), while the browser it was copied
// from refreshes and goes on.
func testCopiedCookieJar(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	stolen := c.Jar()
	if len(stolen) != 2 {
		t.Fatalf("jar: %v", stolen)
	}
	if got := a.replay(stolen); got != http.StatusOK {
		t.Fatalf("the copy before the bound cookie expires: %d", got)
	}
	a.clock.Advance(lifetime)
	if got := a.replay(stolen); got != http.StatusUnauthorized {
		t.Fatalf("the copy after the bound cookie expired: %d", got)
	}
	withoutBound := map[string]string{cloakroom.DefaultCookieName: stolen[cloakroom.DefaultCookieName]}
	if got := a.replay(withoutBound); got != http.StatusUnauthorized {
		t.Fatalf("the session cookie alone: %d", got)
	}
	for range 3 {
		if got := a.page(c); got != http.StatusOK {
			t.Fatalf("the browser: %d", got)
		}
		a.clock.Advance(lifetime)
	}
	if got := a.replay(stolen); got != http.StatusUnauthorized {
		t.Fatalf("the copy later: %d", got)
	}
	if !strings.Contains(a.logs.String(), "suspected replay") || !strings.Contains(a.logs.String(), "reason=expired") || !strings.Contains(a.logs.String(), "reason=missing") {
		t.Fatalf("the refusals are not logged:\n%s", a.logs)
	}
}

// Registrations of one session racing with the same proof, as a copy of
// the sign-in answer replayed at once: exactly one binds.
func testConcurrentRegistrations(t *testing.T, store storeCase) {
	a := newApp(t, store, nil)
	c := a.client(dbsc.AlgES256)
	c.Register = false
	reg := offer(t, a.login(c, "alice"))
	proof, _ := c.Key().Proof(reg.Challenge, dbsctest.ProofOptions{WithJWK: true})
	const racers = 6
	statuses := make([]int, racers)
	var wg sync.WaitGroup
	for i := range racers {
		tab := c.Clone()
		wg.Go(func() {
			r, err := tab.Do(context.Background(), http.MethodPost, reg.Path, nil, http.Header{dbsc.HeaderResponse: {sf(proof)}})
			if err != nil {
				t.Error(err)
				return
			}
			statuses[i] = r.Status
		})
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == http.StatusOK {
			ok++
		} else if s != http.StatusBadRequest && s != http.StatusConflict {
			t.Errorf("a losing registration answered %d", s)
		}
	}
	if ok != 1 {
		t.Fatalf("%d registrations succeeded, want 1: %v", ok, statuses)
	}
}

// A copy of a bound session's cookies, its bound cookie long expired, can
// still post to the registration endpoint (which must work without the
// bound cookie); that post must not count as the user's activity, or a
// thief could keep an abandoned session from idling out.
func TestRegistrationPostKeepsNoSessionAlive(t *testing.T) {
	a := newApp(t, everyStore(t)[0], nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	_, idleBefore, _ := sessionTimes(t, a, "alice")
	a.clock.Advance(10 * time.Minute)
	stolen := map[string]string{cloakroom.DefaultCookieName: c.Jar()[cloakroom.DefaultCookieName]}
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/auth/dbsc/register", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for name, value := range stolen {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("registration of a bound session: %d, want 409", resp.StatusCode)
	}
	if _, idleAfter, _ := sessionTimes(t, a, "alice"); !idleAfter.Equal(idleBefore) {
		t.Fatalf("the registration post moved the idle deadline from %v to %v", idleBefore, idleAfter)
	}
}

// counter reads the value of b's counter called name with the given label
// value.
func counter(t *testing.T, b *dbsc.Binder, name, label string) float64 {
	t.Helper()
	for _, c := range b.Collectors() {
		ch := make(chan prometheus.Metric, 64)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			if !strings.Contains(m.Desc().String(), `"`+name+`"`) {
				continue
			}
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				t.Fatal(err)
			}
			for _, l := range d.GetLabel() {
				if l.GetValue() == label {
					return d.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no counter %s{%s}", name, label)
	return 0
}

// Anyone can post refreshes naming a session that is over (a cookie jar
// kept past a logout, or none at all): each is counted, and logged at
// Debug only, so a flood of them cannot fill the log at Info.
func TestRefreshOfEndedSessionLogsAtDebug(t *testing.T) {
	a := newApp(t, everyStore(t)[0], nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	id := c.Session().ID
	jar := c.Jar()
	post(t, c, "/logout")
	tab := a.client(dbsc.AlgES256)
	for name, v := range jar {
		tab.SetCookie(name, v)
	}
	const floods = 5
	for range floods {
		if r := post(t, tab, "/auth/dbsc/refresh", dbsc.HeaderSessionID, sf(id)); r.Status != http.StatusOK {
			t.Fatalf("refresh of an ended session: %d %s", r.Status, r.Body)
		}
	}
	if got := counter(t, a.binder, "cloakroom_dbsc_refreshes_total", "ended"); got != floods {
		t.Fatalf("ended refreshes counted %v, want %d", got, floods)
	}
	logs := a.logs.String()
	if n := strings.Count(logs, `level=DEBUG msg="device-bound session refresh: session over"`); n != floods {
		t.Fatalf("%d debug lines for %d refreshes of an ended session:\n%s", n, floods, logs)
	}
	if strings.Contains(logs, `level=INFO msg="device-bound session refresh: session over"`) {
		t.Fatalf("a refresh of an ended session is logged at Info:\n%s", logs)
	}
}

// sabotaged is a memory store whose session commits can be made to fail,
// or to find the session ended by a logout that raced them.
type sabotaged struct {
	*memstore.Store
	fail, end atomic.Bool
}

var errSabotage = errors.New("sabotaged commit")

func (s *sabotaged) Commit(ctx context.Context, rec cloakroom.Record) error {
	if s.fail.Load() {
		return errSabotage
	}
	if s.end.Load() {
		_ = s.Store.Delete(ctx, rec.Key)
	}
	return s.Store.Commit(ctx, rec)
}

// A registration whose key the session's save does not keep (the store
// fails, or a logout ended the session meanwhile) is not audited as a
// registration: "device binding registered" is written after the save
// only, and the metric counts what happened.
func TestRegistrationLoggedAfterSave(t *testing.T) {
	for _, c := range []struct {
		name     string
		sabotage func(*sabotaged)
		status   int
		outcome  string
	}{
		{"store fails", func(s *sabotaged) { s.fail.Store(true) }, http.StatusServiceUnavailable, "unavailable"},
		{"session ended meanwhile", func(s *sabotaged) { s.end.Store(true) }, http.StatusOK, "unauthenticated"},
		{"saved", func(*sabotaged) {}, http.StatusOK, "registered"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var store *sabotaged
			a := newApp(t, storeCase{"sabotaged", func(t *testing.T, clock *storetest.Clock) cloakroom.Store {
				store = &sabotaged{Store: memstore.New(memstore.Config{Now: clock.Now})}
				t.Cleanup(func() { store.Close() })
				return store
			}}, nil)
			cl := a.client(dbsc.AlgES256)
			cl.Register = false
			reg := offer(t, a.login(cl, "alice"))
			proof, _ := cl.Key().Proof(reg.Challenge, dbsctest.ProofOptions{WithJWK: true})
			c.sabotage(store)
			if r := post(t, cl, reg.Path, dbsc.HeaderResponse, sf(proof)); r.Status != c.status {
				t.Fatalf("registration: %d %s, want %d", r.Status, r.Body, c.status)
			}
			store.fail.Store(false)
			store.end.Store(false)
			saved := c.outcome == "registered"
			logs := a.logs.String()
			if got := strings.Contains(logs, `msg="device binding registered"`); got != saved {
				t.Fatalf("registered logged %v, the key saved %v:\n%s", got, saved, logs)
			}
			if got := counter(t, a.binder, "cloakroom_dbsc_registrations_total", c.outcome); got != 1 {
				t.Fatalf("registrations{%s} = %v, want 1\n%s", c.outcome, got, logs)
			}
			if !saved {
				if got := counter(t, a.binder, "cloakroom_dbsc_registrations_total", "registered"); got != 0 {
					t.Fatalf("registrations{registered} = %v for a key not saved", got)
				}
				if !strings.Contains(logs, `msg="device binding registration refused" outcome=`+c.outcome) {
					t.Fatalf("the failed registration is not logged as refused:\n%s", logs)
				}
			}
			d, err := a.manager.Devices(context.Background(), "alice")
			if err != nil {
				t.Fatal(err)
			}
			if bound := len(d) == 1 && d[0].Bound; bound != saved {
				t.Fatalf("devices %+v: bound %v, want %v", d, bound, saved)
			}
		})
	}
}

// A request carrying the bound cookie more than once is refused as
// invalid, whichever comes first: a cookie planted for a sibling domain or
// a longer path rides along with the real one (and is sent first), and
// the session middleware refuses a duplicated session cookie the same way.
func TestDuplicatedBoundCookieRefused(t *testing.T) {
	a := newApp(t, everyStore(t)[0], nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	jar := c.Jar()
	session, bound := jar[cloakroom.DefaultCookieName], jar[dbsc.DefaultCookieName]
	if session == "" || bound == "" {
		t.Fatalf("jar: %v", jar)
	}
	planted := "v1.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	send := func(cookies ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, a.srv.URL+"/", nil)
		for _, line := range cookies {
			req.Header.Add("Cookie", line)
		}
		resp, err := a.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	s, b := cloakroom.DefaultCookieName+"="+session, dbsc.DefaultCookieName+"="
	if got := send(s + "; " + b + bound); got != http.StatusOK {
		t.Fatalf("the bound cookie once: %d", got)
	}
	for _, cookies := range [][]string{
		{s + "; " + b + bound + "; " + b + planted},
		{s + "; " + b + planted + "; " + b + bound},
		{s + "; " + b + bound + "; " + b + bound},
		{s + "; " + b + bound, b + planted},
	} {
		before := counter(t, a.binder, "cloakroom_dbsc_refused_total", "invalid")
		if got := send(cookies...); got != http.StatusUnauthorized {
			t.Errorf("Cookie %q: %d, want 401", cookies, got)
		}
		if after := counter(t, a.binder, "cloakroom_dbsc_refused_total", "invalid"); after != before+1 {
			t.Errorf("Cookie %q: not refused as invalid (%v refusals before, %v after)", cookies, before, after)
		}
	}
}
