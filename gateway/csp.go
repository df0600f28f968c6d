package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/ratelimit"
)

// DefaultCSP is the Content-Security-Policy the gateway sets on the SPA
// and its static files: scripts only from the app's own origin (so an
// injected inline handler or <script> does not run), no plugins, no <base>
// rewriting, no framing. The report directives are added to it.
const DefaultCSP = "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// CSPOff as Config.CSP sends no policy.
const CSPOff = "off"

// Limits of the violation report endpoint, which anyone can call. Each
// client address has its own budget, so that one client flooding cannot
// silence everyone else's reports; a ceiling over all clients bounds the
// log lines an attacker with many addresses can cause.
const (
	maxCSPReport       = 16 << 10 // bytes per report body
	maxCSPReportFields = 256      // bytes kept of each field in the log
	cspReportGroup     = "csp-endpoint"

	// cspClientPerSec and cspClientBurst: violations logged per second
	// per client address (an IPv6 address counts by its /64), sustained
	// and at once. A page that breaks its policy reports a few.
	cspClientPerSec = 2
	cspClientBurst  = 20
	// cspAllPerSec and cspAllBurst: violations logged per second by the
	// whole gateway, whatever the addresses.
	cspAllPerSec = 50
	cspAllBurst  = 500
	// cspClientTable is how many client addresses are remembered: a fixed
	// table, so that many addresses cannot grow memory. The one seen
	// least recently is forgotten first; it comes back with a full burst,
	// which the gateway-wide ceiling bounds.
	cspClientTable = 4096
)

// cspDirectives are the metric label values; any other directive counts
// as "other", so clients cannot grow the label set.
var cspDirectives = []string{"script-src", "script-src-elem", "script-src-attr", "object-src", "base-uri", "frame-ancestors",
	"default-src", "style-src", "style-src-elem", "style-src-attr", "img-src", "connect-src", "form-action", "other"}

// spaHeaders returns what sets the SPA's headers: the CSP (enforced, or
// report-only for rollout) with its report endpoint (report-uri, and
// report-to when serving HTTPS), nosniff, Referrer-Policy and
// Cross-Origin-Opener-Policy. The policy is put together once.
func spaHeaders(cfg *Config) func(http.Header) {
	report := cfg.AuthPrefix + "/csp-report"
	policy := cfg.CSP + "; report-uri " + report
	if cfg.TLS {
		// The Reporting API delivers to secure origins; a browser that
		// supports it then ignores report-uri. Over plain HTTP (loopback
		// development) report-uri alone is what browsers deliver.
		policy += "; report-to " + cspReportGroup
	}
	header := "Content-Security-Policy"
	if cfg.CSPReportOnly {
		header = "Content-Security-Policy-Report-Only"
	}
	return func(h http.Header) {
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if cfg.CSP == CSPOff {
			return
		}
		if cfg.TLS {
			h.Set("Reporting-Endpoints", cspReportGroup+`="`+report+`"`)
		}
		h.Set(header, policy)
	}
}

// cspReports receives CSP violation reports: size-capped, rate-limited
// per client and overall, logged (bounded fields) and counted; the answer
// reflects nothing.
type cspReports struct {
	clientIP  func(*http.Request) string // the session manager's reading of it
	log       *slog.Logger
	now       func() time.Time
	perClient *ratelimit.Keyed
	overall   *ratelimit.Single
	count     *prometheus.CounterVec
}

func newCSPReports(sessions *cloakroom.Manager, log *slog.Logger, now func() time.Time) *cspReports {
	c := &cspReports{clientIP: sessions.Config().ClientIP, log: log, now: now,
		perClient: ratelimit.NewKeyed(cspClientTable, ratelimit.Rate{PerSec: cspClientPerSec, Burst: cspClientBurst}),
		overall:   ratelimit.NewSingle(ratelimit.Rate{PerSec: cspAllPerSec, Burst: cspAllBurst}),
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_csp_reports_total",
			Help: "CSP violation reports received, by violated directive (outcome dropped: over the rate limit or malformed).",
		}, []string{"directive"})}
	for _, d := range append(cspDirectives, "dropped") {
		c.count.WithLabelValues(d)
	}
	return c
}

// cspViolation is what is kept of one report, from either format.
type cspViolation struct {
	Directive, Blocked, Document, Source, Sample, Disposition string
	Line                                                      int
}

// cspReport is POST {auth}/csp-report: the legacy report-uri format
// (application/csp-report, {"csp-report": {...}}) and the Reporting API's
// (application/reports+json, [{"type":"csp-violation","body":{...}}]).
func (c *cspReports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, code, message string) {
		c.count.WithLabelValues("dropped").Inc()
		httpjson.Error(w, status, code, message)
	}
	ip := c.clientIP(r)
	client, now := ratelimit.ClientKey(ip), c.now()
	// The client's budget first: a flooder spends its own, never the
	// gateway-wide one.
	if !c.perClient.Allow(client, now) || !c.overall.Allow(now) {
		refuse(http.StatusTooManyRequests, "throttled", "Too many reports.")
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/csp-report", "application/reports+json", "application/json":
	default:
		refuse(http.StatusUnsupportedMediaType, "bad_request", "Send a CSP violation report.")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCSPReport))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		p := errTooLarge(tooBig.Limit)
		refuse(p.Status, p.Code, p.Message)
		return
	}
	violations, ok := parseCSPReports(body)
	if err != nil || !ok {
		refuse(http.StatusBadRequest, "bad_request", "The body is not a CSP violation report.")
		return
	}
	// A batch pays for every line it logs, into debt if need be.
	c.perClient.Charge(client, len(violations)-1, now)
	c.overall.Charge(len(violations)-1, now)
	for _, v := range violations {
		directive := "other"
		for _, d := range cspDirectives {
			if v.Directive == d || strings.HasPrefix(v.Directive, d+" ") {
				directive = d
			}
		}
		c.count.WithLabelValues(directive).Inc()
		c.log.LogAttrs(r.Context(), slog.LevelWarn, "csp violation",
			slog.String("directive", v.Directive), slog.String("blocked", v.Blocked),
			slog.String("document", v.Document), slog.String("source", v.Source), slog.Int("line", v.Line),
			slog.String("sample", v.Sample), slog.String("disposition", v.Disposition),
			slog.String("client_ip", ip))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// parseCSPReports decodes either report format; ok is false for anything
// else. Fields are cut to maxCSPReportFields bytes.
func parseCSPReports(body []byte) ([]cspViolation, bool) {
	type legacy struct {
		Document    string `json:"document-uri"`
		Violated    string `json:"violated-directive"`
		Effective   string `json:"effective-directive"`
		Blocked     string `json:"blocked-uri"`
		Source      string `json:"source-file"`
		Sample      string `json:"script-sample"`
		Disposition string `json:"disposition"`
		Line        int    `json:"line-number"`
	}
	type modern struct {
		Document    string `json:"documentURL"`
		Effective   string `json:"effectiveDirective"`
		Blocked     string `json:"blockedURL"`
		Source      string `json:"sourceFile"`
		Sample      string `json:"sample"`
		Disposition string `json:"disposition"`
		Line        int    `json:"lineNumber"`
	}
	cut := func(s string) string { return truncateUTF8(s, maxCSPReportFields) }
	// A URL's query and fragment may hold a token (a reset link, an OAuth
	// answer): never logged.
	cutURL := func(s string) string {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i]
		}
		return cut(s)
	}
	var one struct {
		Report *legacy `json:"csp-report"`
	}
	if err := json.Unmarshal(body, &one); err == nil && one.Report != nil {
		l := one.Report
		d := l.Effective
		if d == "" {
			d = l.Violated
		}
		return []cspViolation{{Directive: cut(d), Blocked: cutURL(l.Blocked), Document: cutURL(l.Document),
			Source: cutURL(l.Source), Sample: cut(l.Sample), Disposition: cut(l.Disposition), Line: l.Line}}, true
	}
	var many []struct {
		Type string  `json:"type"`
		Body *modern `json:"body"`
	}
	if err := json.Unmarshal(body, &many); err != nil || len(many) == 0 || len(many) > 32 {
		return nil, false
	}
	var out []cspViolation
	for _, rep := range many {
		if rep.Type != "csp-violation" || rep.Body == nil {
			continue
		}
		m := rep.Body
		out = append(out, cspViolation{Directive: cut(m.Effective), Blocked: cutURL(m.Blocked), Document: cutURL(m.Document),
			Source: cutURL(m.Source), Sample: cut(m.Sample), Disposition: cut(m.Disposition), Line: m.Line})
	}
	return out, len(out) > 0
}

// truncateUTF8 cuts s to at most n bytes on a rune boundary, replacing
// control characters so a report cannot forge log lines.
func truncateUTF8(s string, n int) string {
	if len(s) > n {
		s = s[:n] // a rune cut in two becomes "?" below
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
