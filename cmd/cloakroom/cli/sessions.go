package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

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
	fs, cf := subcommandFlags(e, "sessions", "list")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	user, code, ok := nameArgument(fs, args)
	if !ok {
		return code
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	user, err := t.accounts.SessionUserID(e.ctx, user)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	devices, err := t.sessions.Devices(e.ctx, user)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	if *asJSON {
		if devices == nil {
			devices = []cloakroom.Device{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(devices); err != nil {
			return exitFailure
		}
		return exitOK
	}
	if len(devices) == 0 {
		fmt.Fprintf(e.stdout, "%s has no live sessions\n", user)
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLE\tDEVICE\tIP\tLOGGED IN\tLAST SEEN\tEXPIRES")
	for _, d := range devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Handle, orDash(d.Label), orDash(d.IP),
			formatTime(d.CreatedAt), formatTime(d.LastSeen), formatTime(d.IdleExpiry))
	}
	tw.Flush()
	return exitOK
}

func runSessionsRevoke(e *env, args []string) int {
	fs, cf := subcommandFlags(e, "sessions", "revoke")
	handle := fs.String("handle", "", "end only the session with this `HANDLE` (from sessions list); default: all of the user's sessions")
	user, code, ok := nameArgument(fs, args)
	if !ok {
		return code
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	user, err := t.accounts.SessionUserID(e.ctx, user)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	if *handle == "" {
		if err := t.sessions.RevokeUser(e.ctx, user); err != nil {
			fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
			return exitFailure
		}
		fmt.Fprintf(e.stdout, "ended every session of %s\n", user)
		return exitOK
	}
	if err := t.sessions.RevokeDevice(e.ctx, user, *handle); err != nil {
		if errors.Is(err, cloakroom.ErrNotFound) {
			fmt.Fprintf(e.stderr, "%s: %s has no session with handle %q (see: cloakroom sessions list %s)\n", fs.Name(), user, *handle, user)
		} else {
			fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		}
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "ended session %s of %s\n", *handle, user)
	return exitOK
}

// runSessionsRevokeEveryone ends every session in the store at once, after
// an incident: the store's global epoch moves, so sessions of every way
// in, anonymous ones and the provider tokens sealed with them end, on
// every gateway sharing the store, before it returns.
func runSessionsRevokeEveryone(e *env, args []string) int {
	fs, cf := subcommandFlags(e, "sessions", "revoke-everyone")
	yes := fs.Bool("yes", false, "confirm: every user, this operator included, must sign in again")
	positional, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(fs, "takes no arguments, got %d", len(positional))
	}
	if !*yes {
		return usageError(fs, "this ends every session of every user; add --yes to do it")
	}
	t, code := openStoreTools(e, fs, cf)
	if t == nil {
		return code
	}
	defer t.close()
	epoch, err := t.sessions.RevokeEveryone(e.ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "ended every session (epoch %d)\n", epoch)
	return exitOK
}
