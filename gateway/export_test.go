package gateway

import "net/http"

// Internals exposed to the external tests and fuzz targets.

var (
	BearerToken = bearerToken
)

// LoginRequest mirrors loginRequest for the fuzz target.
type LoginRequest = loginRequest

// ReadLogin exposes readLogin.
func ReadLogin(w http.ResponseWriter, r *http.Request) (LoginRequest, bool, error) {
	return readLogin(w, r)
}

// InputErrorStatus returns the HTTP status of a client input error, or 0
// for any other error.
func InputErrorStatus(err error) int {
	if in, ok := err.(*problem); ok {
		return in.Status
	}
	return 0
}

// ParseCSPReports exposes the CSP report parser to the fuzz target; it
// returns the violations' fields.
func ParseCSPReports(body []byte) ([][]string, bool) {
	vs, ok := parseCSPReports(body)
	var out [][]string
	for _, v := range vs {
		out = append(out, []string{v.Directive, v.Blocked, v.Document, v.Source, v.Sample, v.Disposition})
	}
	return out, ok
}

// UpgradeFromOwnOrigin exposes the WebSocket handshake's origin check.
func (g *Gateway) UpgradeFromOwnOrigin(r *http.Request) bool { return g.app.upgradeFromOwnOrigin(r) }

// FormatWait exposes how a throttled user is told the wait.
var FormatWait = formatWait
