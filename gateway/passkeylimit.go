package gateway

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/cloakroom/cloakroom/internal/ratelimit"
)

// The passkey sign-in's two endpoints answer browsers without a session:
// each begin writes a ceremony record to the session store (it lives
// accounts.PasskeyCeremonyLifetime), each finish reads an account and
// checks a signature. Token buckets bound both, per client address (an
// IPv6 client by its /64) and for the whole gateway, so one address
// cannot fill the store or keep the gateway verifying, and a flood from
// many addresses cannot fill it either: at most passkeyAllPerSec records
// a second are written, passkeyAllBurst at once. A sign-in takes a token
// at begin and one at finish.
const (
	// passkeyClientPerSec and passkeyClientBurst: one address's begins
	// and finishes; a person signs in with a few, a retry or two.
	passkeyClientPerSec = 0.5
	passkeyClientBurst  = 20
	// passkeyAllPerSec and passkeyAllBurst: every address's together.
	passkeyAllPerSec = 50
	passkeyAllBurst  = 500
	// passkeyClientTable is how many addresses are remembered: a fixed
	// size, so that many addresses cannot grow memory.
	passkeyClientTable  = 4096
	msgPasskeyThrottled = "Too many passkey sign-ins from your network. Wait a moment, then try again."
)

// anonymousLimit bounds the requests of an endpoint anyone can call.
type anonymousLimit struct {
	perClient  *ratelimit.Keyed
	overall    *ratelimit.Single
	retryAfter int // seconds: one token's refill for a client
}

func newPasskeyLimit() *anonymousLimit {
	return &anonymousLimit{
		perClient:  ratelimit.NewKeyed(passkeyClientTable, ratelimit.Rate{PerSec: passkeyClientPerSec, Burst: passkeyClientBurst}),
		overall:    ratelimit.NewSingle(ratelimit.Rate{PerSec: passkeyAllPerSec, Burst: passkeyAllBurst}),
		retryAfter: int(math.Ceil(1 / float64(passkeyClientPerSec))),
	}
}

// allow takes a token for the client at ip: its own first, so that a
// flooder spends its budget, never the gateway-wide one.
func (l *anonymousLimit) allow(ip string, now time.Time) bool {
	return l.perClient.Allow(ratelimit.ClientKey(ip), now) && l.overall.Allow(now)
}

// passkeyThrottled answers and audits a passkey sign-in over its limit
// (429 with Retry-After), reporting true; false lets it go on.
func (p *signInPages) passkeyThrottled(a *loginAttempt, step string) bool {
	if p.passkeyLimit == nil || p.passkeyLimit.allow(a.s.ClientIP(), p.now()) {
		return false
	}
	a.w.Header().Set("Retry-After", strconv.Itoa(p.passkeyLimit.retryAfter))
	a.fail(http.StatusTooManyRequests, "throttled", msgPasskeyThrottled)
	a.audit(outcomeThrottled, slog.String("method", "passkey"), slog.String("step", step))
	return true
}
