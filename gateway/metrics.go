package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloakroom/cloakroom"
)

// Label values, fixed so that metric cardinality stays bounded whatever
// clients send.
const (
	outcomeSuccess    = "success"
	outcomeInvalid    = "invalid_credentials"
	outcomeThrottled  = "throttled"
	outcomeBadRequest = "bad_request"
	outcomeError      = "error"
	outcomeBusy       = "busy" // every password-hashing slot stayed taken

	// Outcomes of audit lines only, not of the login counter.
	outcomeWeakPassword   = "weak_password"   // a new password the policy refuses
	outcomeInvalidInput   = "invalid_input"   // other input the accounts refuse
	outcomeUnknownSession = "unknown_session" // a session handle the user has no session with

	revokeDevice      = "device"
	revokeOthers      = "others"
	revokeAll         = "all"
	revokeAdminUser   = "admin_user"
	revokeAdminDevice = "admin_device"
	revokeAdminAll    = "admin_all"
)

// Metrics are the gateway's Prometheus metrics. Create them with
// [NewMetrics] before the session manager, let them set the manager's
// configuration ([Metrics.ConfigureSessions]), and pass them to [New] as
// Config.Metrics: every part exists before anything reports to it.
type Metrics struct {
	registry      *prometheus.Registry
	logins        *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	storeErrors   prometheus.Counter
	proxyDuration *prometheus.HistogramVec
	storeDuration *prometheus.HistogramVec
	// loadDuration is storeDuration's "load" series, looked up once: every
	// request with a session cookie observes it, and WithLabelValues hashes
	// the label on each call.
	loadDuration prometheus.Observer
}

// lengther is implemented by stores that can count their sessions cheaply
// (memstore). The Store interface has no count, and listing every user's
// sessions on each scrape would cost one store call per user, so other
// stores export no active-sessions gauge.
type lengther interface{ Len() int }

// NewMetrics registers the gateway's own metrics in reg (a new registry
// when nil), which the admin listener's /metrics serves; [New] adds those
// of the parts it is given (the admission, the vault, the store).
func NewMetrics(reg *prometheus.Registry) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		registry: reg,
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_logins_total",
			Help: "Login attempts by outcome.",
		}, []string{"outcome"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cloakroom_revocations_total",
			Help: "Session revocations by kind (device, others, all; admin_user, admin_device, admin_all).",
		}, []string{"kind"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cloakroom_store_errors_total",
			Help: "Session store failures seen by the gateway (requests then fail closed).",
		}),
		proxyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cloakroom_proxy_request_duration_seconds",
			Help:    "Time to serve requests forwarded to API upstreams, by route prefix.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cloakroom_store_duration_seconds",
			Help:    "Time spent in session store operations, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
	}
	if err := m.register(m.logins, m.revocations, m.storeErrors, m.proxyDuration, m.storeDuration); err != nil {
		return nil, err
	}
	// Export every outcome and kind from the start, so rates work from zero.
	for _, o := range []string{outcomeSuccess, outcomeInvalid, outcomeThrottled, outcomeBadRequest, outcomeError, outcomeBusy} {
		m.logins.WithLabelValues(o)
	}
	for _, k := range []string{revokeDevice, revokeOthers, revokeAll, revokeAdminUser, revokeAdminDevice, revokeAdminAll} {
		m.revocations.WithLabelValues(k)
	}
	m.loadDuration = m.storeDuration.WithLabelValues("load")
	return m, nil
}

// register adds collectors to the registry; a collector registered twice
// (two gateways on one Metrics) is a configuration error.
func (m *Metrics) register(collectors ...prometheus.Collector) error {
	var errs []error
	for _, c := range collectors {
		if err := m.registry.Register(c); err != nil {
			errs = append(errs, fmt.Errorf("%w: Metrics: %w", ErrInvalidConfig, err))
		}
	}
	return errors.Join(errs...)
}

// registerStore adds the active-sessions gauge for a store that can count
// its sessions cheaply.
func (m *Metrics) registerStore(store cloakroom.Store) error {
	l, ok := store.(lengther)
	if !ok {
		return nil
	}
	return m.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cloakroom_active_sessions",
		Help: "Sessions held by the store, including expired ones not yet swept.",
	}, func() float64 { return float64(l.Len()) }))
}

// ConfigureSessions sets what the gateway owns in its session manager's
// configuration, before the manager is built:
//   - OnLoad, so every session lookup is timed in
//     cloakroom_store_duration_seconds{op="load"} and store failures counted
//     in cloakroom_store_errors_total;
//   - Logger, wrapped to pass warnings and errors only: the gateway writes
//     the audit events (login, logout, revocation, with the fields
//     docs/endpoints.md lists), so the manager's own info lines would
//     repeat each one. A nil Logger wraps slog.Default().
func (m *Metrics) ConfigureSessions(cfg *cloakroom.Config) {
	cfg.OnLoad = m.onLoad
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cfg.Logger = slog.New(warningsOnly{logger.Handler()})
}

func (m *Metrics) onLoad(_ *http.Request, outcome cloakroom.LoadOutcome, took time.Duration) {
	m.loadDuration.Observe(took.Seconds())
	if outcome == cloakroom.LoadFailed {
		m.storeErrors.Inc()
	}
}

// warningsOnly drops records below slog.LevelWarn.
type warningsOnly struct{ slog.Handler }

func (w warningsOnly) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn && w.Handler.Enabled(ctx, level)
}

func (w warningsOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warningsOnly{w.Handler.WithAttrs(attrs)}
}

func (w warningsOnly) WithGroup(name string) slog.Handler {
	return warningsOnly{w.Handler.WithGroup(name)}
}
