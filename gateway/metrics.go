package gateway

import (
	"context"
	"errors"
	"fmt"
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

	revokeDevice      = "device"
	revokeOthers      = "others"
	revokeAll         = "all"
	revokeAdminUser   = "admin_user"
	revokeAdminDevice = "admin_device"
	revokeAdminAll    = "admin_all"
)

type metrics struct {
	logins        *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	storeErrors   prometheus.Counter
	proxyDuration *prometheus.HistogramVec
	storeDuration *prometheus.HistogramVec
}

// lengther is implemented by stores that can count their sessions cheaply
// (memstore). The Store interface has no count, and listing every user's
// sessions on each scrape would cost one store call per user, so other
// stores export no active-sessions gauge.
type lengther interface{ Len() int }

func newMetrics(reg *prometheus.Registry, store cloakroom.Store, more ...prometheus.Collector) (*metrics, error) {
	m := &metrics{
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
	collectors := []prometheus.Collector{m.logins, m.revocations, m.storeErrors, m.proxyDuration, m.storeDuration}
	collectors = append(collectors, more...)
	if l, ok := store.(lengther); ok {
		collectors = append(collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cloakroom_active_sessions",
			Help: "Sessions held by the store, including expired ones not yet swept.",
		}, func() float64 { return float64(l.Len()) }))
	}
	var errs []error
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			errs = append(errs, fmt.Errorf("%w: Metrics: %w", ErrInvalidConfig, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Export every outcome and kind from the start, so rates work from zero.
	for _, o := range []string{outcomeSuccess, outcomeInvalid, outcomeThrottled, outcomeBadRequest, outcomeError} {
		m.logins.WithLabelValues(o)
	}
	for _, k := range []string{revokeDevice, revokeOthers, revokeAll, revokeAdminUser, revokeAdminDevice, revokeAdminAll} {
		m.revocations.WithLabelValues(k)
	}
	return m, nil
}

// timeStore runs one store operation, recording its duration and counting
// store failures.
func (g *Gateway) timeStore(op string, f func() error) error {
	start := time.Now()
	err := f()
	g.metrics.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if errors.Is(err, cloakroom.ErrStoreUnavailable) {
		g.metrics.storeErrors.Inc()
	}
	return err
}

// loadTimer measures how long the session middleware took to load the
// session (the store lookup) and counts load failures. The manager owns its
// store, so the gateway times the lookup from outside: start is taken
// before the session middleware and read inside it.
type loadTimer struct{ g *Gateway }

type loadStartKey struct{}

func (lt loadTimer) before(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), loadStartKey{}, time.Now())
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func (lt loadTimer) after(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start, ok := r.Context().Value(loadStartKey{}).(time.Time)
		if ok && lt.g.hasSessionCookie(r) {
			lt.g.metrics.storeDuration.WithLabelValues("load").Observe(time.Since(start).Seconds())
		}
		if lt.g.sessions.Session(r).Err() != nil {
			lt.g.metrics.storeErrors.Inc()
		}
		next.ServeHTTP(w, r)
	})
}
