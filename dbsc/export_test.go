package dbsc

import "github.com/cloakroom/cloakroom/internal/ratelimit"

// SetRefreshLimits replaces b's bounds on refresh challenges, before it
// serves, so a test reaches the overall bound with a few sessions.
func SetRefreshLimits(b *Binder, perSession, overall ratelimit.Rate) {
	b.limit = newRefreshLimit(perSession, overall)
}
