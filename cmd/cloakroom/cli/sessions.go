package cli

import (
	"errors"
	"fmt"

	"github.com/cloakroom/cloakroom"
)

func sessionsCommands() []subcommand {
	return []subcommand{
		{"list", "USER [--json]", "list a user's live sessions (devices)", runSessionsList},
		{"revoke", "USER [--handle HANDLE]", "end one session of a user by its handle, or all of them", runSessionsRevoke},
		{"revoke-everyone", "--yes", "end every session of every user (local, OpenID, vault) and every anonymous one, on every gateway", runSessionsRevokeEveryone},
	}
}

func runSessions(e *env, args []string) int {
	return dispatch(e, "sessions", "list or end a user's sessions in the store", sessionsCommands(), args)
}

func runSessionsList(e *env, args []string) int {
	c := newStoreCommand(e, "sessions", "list")
	asJSON := c.fs.Bool("json", false, "print JSON instead of a table")
	return c.withUserSessions(args, func(t *storeTools, user string) int {
		devices, err := t.sessions.Devices(e.ctx, user)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			return printJSONList(e.stdout, devices)
		}
		if len(devices) == 0 {
			fmt.Fprintf(e.stdout, "%s has no live sessions\n", user)
			return exitOK
		}
		return printTable(e.stdout, "HANDLE\tDEVICE\tIP\tLOGGED IN\tLAST SEEN\tEXPIRES", devices, func(d cloakroom.Device) []string {
			return []string{d.Handle, orDash(d.Label), orDash(d.IP), formatTime(d.CreatedAt), formatTime(d.LastSeen), formatTime(d.IdleExpiry)}
		})
	})
}

func runSessionsRevoke(e *env, args []string) int {
	c := newStoreCommand(e, "sessions", "revoke")
	handle := c.fs.String("handle", "", "end only the session with this `HANDLE` (from sessions list); default: all of the user's sessions")
	return c.withUserSessions(args, func(t *storeTools, user string) int {
		if *handle == "" {
			return c.done(t.sessions.RevokeUser(e.ctx, user), "ended every session of %s\n", user)
		}
		err := t.sessions.RevokeDevice(e.ctx, user, *handle)
		if errors.Is(err, cloakroom.ErrNotFound) {
			err = fmt.Errorf("%s has no session with handle %q (see: cloakroom sessions list %s)", user, *handle, user)
		}
		return c.done(err, "ended session %s of %s\n", *handle, user)
	})
}

// withUserSessions is withUser for the sessions commands: do gets the user
// ID the name's sessions carry (names are case-insensitive at login).
func (c *storeCommand) withUserSessions(args []string, do func(t *storeTools, user string) int) int {
	return c.withUser(args, func(t *storeTools, name string) int {
		user, err := t.accounts.SessionUserID(c.ctx, name)
		if err != nil {
			return c.fail(err)
		}
		return do(t, user)
	})
}

// runSessionsRevokeEveryone ends every session in the store at once, after
// an incident: the store's global epoch moves, so sessions of every way
// in, anonymous ones and the provider tokens sealed with them end, on
// every gateway sharing the store, before it returns.
func runSessionsRevokeEveryone(e *env, args []string) int {
	c := newStoreCommand(e, "sessions", "revoke-everyone")
	yes := c.fs.Bool("yes", false, "confirm: every user, this operator included, must sign in again")
	positional, code, ok := parseArgs(c.fs, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c.fs, "takes no arguments, got %d", len(positional))
	}
	if !*yes {
		return usageError(c.fs, "this ends every session of every user; add --yes to do it")
	}
	return c.withStore(func(t *storeTools) int {
		epoch, err := t.sessions.RevokeEveryone(e.ctx)
		return c.done(err, "ended every session (epoch %d)\n", epoch)
	})
}
