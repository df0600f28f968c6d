package proxy

import (
	"net/http"
	"testing"
)

// Which responses are held open under the session's lifetime: every
// spelling of an event stream, upgrades, unknown and large lengths.
func TestLongLived(t *testing.T) {
	for _, tc := range []struct {
		status int
		length int64
		ctype  string
		want   bool
	}{
		{200, 10, "application/json", false},
		{200, 10, "", false},
		{200, 10, "text/event-stream", true},
		{200, 10, "Text/Event-Stream; charset=utf-8", true},
		{200, 10, " text/event-stream ;", true},
		{200, 10, "text/event-stream; =malformed", true},
		{200, 10, "text/event-streamx", false},
		{200, -1, "application/json", true},
		{200, longBodyBytes + 1, "application/octet-stream", true},
		{200, longBodyBytes, "application/octet-stream", false},
		{http.StatusSwitchingProtocols, 0, "", true},
	} {
		res := &http.Response{StatusCode: tc.status, ContentLength: tc.length, Header: http.Header{}}
		if tc.ctype != "" {
			res.Header.Set("Content-Type", tc.ctype)
		}
		if got := longLived(res); got != tc.want {
			t.Errorf("longLived(%d, %d, %q) = %v, want %v", tc.status, tc.length, tc.ctype, got, tc.want)
		}
	}
}
