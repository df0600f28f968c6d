package oidcbff_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The back-channel logout answers a body over its limit as every endpoint
// does, 413 too_large, also when mounted without the gateway's own bound.
func TestBackchannelLogoutTooLargeBody(t *testing.T) {
	e := newEnv(t, 1, func([]string) *provider { return newMockProvider(t).provider })
	mux := http.NewServeMux()
	e.nodes[0].client.Register(mux, nil)
	req := httptest.NewRequest(http.MethodPost, "/auth/backchannel-logout/"+e.p.name,
		strings.NewReader("logout_token="+strings.Repeat("a", 17<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	var body struct{ Error string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusRequestEntityTooLarge || body.Error != "too_large" {
		t.Errorf("status %d: %s", rec.Code, rec.Body)
	}
}
