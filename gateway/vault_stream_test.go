package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/vault"
)

// withVaultStreamRoute routes /stream/ to up, in vault mode.
func withVaultStreamRoute(t *testing.T, up *streamUpstream) envOption {
	return func(c *gateway.Config) {
		withStreamRoute(up)(c)
		line, err := seal.NewKeyLine("test")
		if err != nil {
			t.Fatal(err)
		}
		keys, err := seal.Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		capture, err := vault.ParseCapture("POST /stream/login token")
		if err != nil {
			t.Fatal(err)
		}
		c.Vault, err = vault.New(vault.Config{Admission: c.Admission, Sealer: keys, Logger: c.Logger,
			Routes: []vault.Route{{Prefix: "/stream/", Capture: []vault.Capture{capture}}}})
		if err != nil {
			t.Fatal(err)
		}
		route, err := proxy.ParseRoute("/stream/=" + up.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		route.Mode = c.Vault.Modes()["/stream/"]
		c.Routes = []proxy.Route{route}
	}
}

// A stream or WebSocket proxied on a vault route for a logged-in session
// ends with the session, as on any other route.
func TestVaultRouteStreamsEndWithTheSession(t *testing.T) {
	for _, kind := range streamKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			up := newStreamUpstream(t)
			e := newEnv(t, withRecheckInterval(t, noBackstop), withVaultStreamRoute(t, up))
			victim, bystander := e.minted("alice"), e.minted("bob")
			st, other := kind.open(t, victim), kind.open(t, bystander)
			<-st.first
			<-other.first
			if r := victim.do(http.MethodPost, "/auth/logout", "", ""); r.Status != http.StatusNoContent {
				t.Fatalf("logout: status %d: %s", r.Status, r.Text)
			}
			select {
			case <-st.closed:
			case <-time.After(20 * time.Second):
				t.Fatal("the stream is still open 20s after the session ended")
			}
			onlyBystanderStreams(t, up, other)
		})
	}
}
