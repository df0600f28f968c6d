package signin_test

import (
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/cloakroom/cloakroom/signin"
)

// A request carrying the device cookie twice carries no known-device
// token, whichever copy comes first: one may be planted (sent first, for a
// longer path) to have the login throttle and the cookie written back
// after a sign-in use the planter's tokens instead of the browser's.
func TestDeviceTokensRepeatedCookieRefused(t *testing.T) {
	c := signin.DeviceCookie + "="
	for _, tc := range []struct {
		cookie []string
		want   []string
	}{
		{[]string{c + "own1.own2"}, []string{"own1", "own2"}},
		{[]string{"a=1; " + c + "own1"}, []string{"own1"}},
		{[]string{c + "planted; " + c + "own1.own2"}, nil},
		{[]string{c + "own1.own2; " + c + "planted"}, nil},
		{[]string{c + "planted", c + "own1"}, nil},
		{[]string{c + "own1; " + c + "own1"}, nil},
	} {
		r := httptest.NewRequest("POST", "/auth/login", nil)
		r.Header["Cookie"] = tc.cookie
		if got := signin.DeviceTokens(r); !slices.Equal(got, tc.want) {
			t.Errorf("Cookie %q: tokens %q, want %q", tc.cookie, got, tc.want)
		}
	}
}
