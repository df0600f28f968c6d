package cloakroom_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cloakroom/cloakroom"
)

// Two renewals of one session racing (a double-clicked "log out other
// devices", two tabs stepping up): the one that loses finds the session
// living on under the winner's new token. It does nothing and says so with
// ErrRotatedMeanwhile, not ErrNotLoggedIn, and leaves the browser's cookie
// alone: no expired cookie, no Clear-Site-Data, which would log the browser
// out of the session the winner just renewed.
func TestRacingRenewalsLeaveTheWinnerAlone(t *testing.T) {
	for name, renew := range map[string]func(context.Context, *cloakroom.Session) error{
		"Renew":        func(ctx context.Context, s *cloakroom.Session) error { return s.Renew(ctx) },
		"RevokeOthers": func(ctx context.Context, s *cloakroom.Session) error { return s.RevokeOthers(ctx) },
	} {
		t.Run(name, func(t *testing.T) {
			a := newApp(t, nil)
			token := a.login("alice")
			var loserErr error
			loser := a.park(token, func(ctx context.Context, s *cloakroom.Session) error {
				loserErr = renew(ctx, s)
				return loserErr
			})
			winner := a.park(token, renew)()
			renewed := sessionCookie(winner)
			if winner.Code != 200 || renewed == nil {
				t.Fatalf("winner: %d, cookie %v", winner.Code, renewed)
			}
			w := loser()
			if !errors.Is(loserErr, cloakroom.ErrRotatedMeanwhile) || errors.Is(loserErr, cloakroom.ErrNotLoggedIn) {
				t.Errorf("loser: %v, want ErrRotatedMeanwhile (and not ErrNotLoggedIn)", loserErr)
			}
			if c := sessionCookie(w); c != nil {
				t.Errorf("loser's response sets the session cookie %q (max-age %d): it must leave the winner's alone", c.Value, c.MaxAge)
			}
			if got := w.Header().Get("Clear-Site-Data"); got != "" {
				t.Errorf("loser's response clears the site's data: %q", got)
			}
			if got := a.whoami(renewed.Value); got != "user=alice" {
				t.Errorf("the winner's token after the race: %q, want user=alice", got)
			}
			if got := a.whoami(token); got == "user=alice" {
				t.Errorf("the old token still works after the renewals")
			}
		})
	}
}
