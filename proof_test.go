package cloakroom_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
)

// proofHeader stands for a secret of the session that a cross-site page
// cannot send (the vault's placeholder): the hooks below trust it.
const proofHeader = "X-Test-Proof"

func withProofHooks(cfg *cloakroom.Config) {
	cfg.CSRFProof = func(r *http.Request, s *cloakroom.Session) bool {
		return r.Header.Get(proofHeader) == "proof-of-"+s.UserID()
	}
	cfg.Activity = func(r *http.Request, s *cloakroom.Session) bool {
		return r.Header.Get(proofHeader) == "proof-of-"+s.UserID()
	}
}

// An unsafe request on the cookie alone, with no Fetch Metadata or Origin
// for CrossOriginProtection to judge, needs the synchronizer token or what
// Config.CSRFProof accepts; a wrong token is refused even with the proof.
func TestCSRFProofStandsInForTheToken(t *testing.T) {
	a := newApp(t, withProofHooks)
	token := a.login("alice")
	noMetadata := []string{"Sec-Fetch-Site", ""}
	cases := []struct {
		name string
		hdr  []string
		want int
	}{
		{"cookie alone", noMetadata, http.StatusForbidden},
		{"another session's proof", append(noMetadata, proofHeader, "proof-of-bob"), http.StatusForbidden},
		{"the session's proof", append(noMetadata, proofHeader, "proof-of-alice"), http.StatusOK},
		{"the proof and a wrong token", append(noMetadata, proofHeader, "proof-of-alice", cloakroom.CSRFHeader, "wrong"), http.StatusForbidden},
		{"a cross-site request with the proof", []string{"Sec-Fetch-Site", "cross-site", proofHeader, "proof-of-alice"}, http.StatusForbidden},
	}
	for _, c := range cases {
		if got := a.do("POST", "/put?k=a&v=b", token, c.hdr...).Code; got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// Under RequireCSRFToken the proof stands in for the token as well.
func TestCSRFProofUnderRequireCSRFToken(t *testing.T) {
	a := newApp(t, func(cfg *cloakroom.Config) {
		withProofHooks(cfg)
		cfg.RequireCSRFToken = true
	})
	token := a.login("alice")
	if got := a.do("POST", "/put?k=a&v=b", token).Code; got != http.StatusForbidden {
		t.Errorf("same-origin request without token or proof: %d, want 403", got)
	}
	if got := a.do("POST", "/put?k=a&v=b", token, proofHeader, "proof-of-alice").Code; got != http.StatusOK {
		t.Errorf("same-origin request with the proof: %d, want 200", got)
	}
}

// Requests that Config.Activity does not count, reads and writes alike,
// never move the idle deadline: the session ends 30 minutes after the last
// request it counted, however many others came.
func TestActivityDecidesWhatKeepsASessionAlive(t *testing.T) {
	a := newApp(t, withProofHooks)
	token := a.login("alice")
	for range 5 {
		a.clock.Advance(5 * time.Minute)
		if got := a.do("GET", "/whoami", token).Body.String(); got != "user=alice" {
			t.Fatalf("uncounted read: %q", got)
		}
		if got := a.do("POST", "/put?k=n&v=1", token).Code; got != http.StatusOK {
			t.Fatalf("uncounted write: %d", got)
		}
	}
	a.clock.Advance(4 * time.Minute) // 29 minutes after the login
	if got := a.do("GET", "/whoami", token, proofHeader, "proof-of-alice").Body.String(); got != "user=alice" {
		t.Fatalf("counted read: %q", got)
	}
	a.clock.Advance(29 * time.Minute) // 29 minutes after the counted read
	if got := a.do("GET", "/whoami", token).Body.String(); got != "user=alice" {
		t.Fatalf("the counted read did not move the idle deadline: %q", got)
	}
	a.clock.Advance(2 * time.Minute)
	if got := a.do("GET", "/whoami", token).Body.String(); got != "user=" {
		t.Fatalf("uncounted requests kept the session alive: %q", got)
	}
}
