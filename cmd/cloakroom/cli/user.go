package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom/accounts"
)

// maxPasswordBytes bounds a password read from standard input.
const maxPasswordBytes = 1024

func userCommands() []subcommand {
	return []subcommand{
		{"add", "NAME [--role ROLE]... [--email EMAIL] [--password-stdin]", "add a user; without --password-stdin a strong password is generated and printed once", runUserAdd},
		{"passwd", "NAME [--password-stdin]", "set a user's password and end all their sessions", runUserPasswd},
		{"disable", "NAME", "disable a user and end all their sessions", runUserDisable},
		{"enable", "NAME", "enable a disabled user", runUserEnable},
		{"delete", "NAME", "delete a user and end all their sessions", runUserDelete},
		{"list", "[--json]", "list users", runUserList},
		{"factors", "NAME", "show a user's factors: authenticator app since when, recovery codes left, passkeys (never a secret or key)", runUserFactors},
		{"reset-factors", "NAME --yes", "remove a user's authenticator app, recovery codes and passkeys (a lost phone); their sessions continue", runUserResetFactors},
		{"remove-passkey", "NAME ID --yes", "remove one of a user's passkeys (ID as user factors shows it); their sessions continue", runUserRemovePasskey},
	}
}

func runUser(e *env, args []string) int {
	return dispatch(e, "user", "manage the gateway's users in the store", userCommands(), args)
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

func runUserAdd(e *env, args []string) int {
	c := newStoreCommand(e, "user", "add")
	c.createsStore = true // the first user may come before serve's first start
	var roles listFlag
	c.fs.Var(&roles, "role", "give the user this `ROLE` (repeatable, or comma-separated); upstreams see roles in X-Forwarded-Groups")
	email := c.fs.String("email", "", "the user's `EMAIL` address, passed upstream in X-Forwarded-Email")
	fromStdin := c.fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	return c.withPassword(args, fromStdin, func(t *storeTools, name, password string) error {
		return t.accounts.Add(e.ctx, name, password, roles, *email)
	}, func(name string) string {
		if len(roles) > 0 {
			return fmt.Sprintf("added user %s with roles %s", name, strings.Join(roles, ", "))
		}
		return "added user " + name
	})
}

func runUserPasswd(e *env, args []string) int {
	c := newStoreCommand(e, "user", "passwd")
	fromStdin := c.fs.Bool("password-stdin", false, "read the new password from the first line of standard input")
	return c.withPassword(args, fromStdin, func(t *storeTools, name, password string) error {
		return t.accounts.SetPassword(e.ctx, name, password)
	}, func(name string) string {
		return "changed the password of " + name + " and ended all their sessions"
	})
}

// withPassword runs `user add` and `user passwd`: after the user name it
// reads the password from standard input (--password-stdin) or generates
// one, before the store opens; set stores it, the line done returns says
// what happened, and a generated password is shown this once.
func (c *storeCommand) withPassword(args []string, fromStdin *bool, set func(t *storeTools, name, password string) error, done func(name string) string) int {
	name, code, ok := nameArgument(c.fs, args)
	if !ok {
		return code
	}
	password, generated, err := obtainPassword(c.stdin, *fromStdin)
	if err != nil {
		return c.fail(err)
	}
	return c.withStore(func(t *storeTools) int {
		if err := set(t, name, password); err != nil {
			return c.accountFailure(name, err)
		}
		fmt.Fprintln(c.stdout, done(name))
		if generated {
			printGeneratedPassword(c.stdout, name, password)
		}
		return exitOK
	})
}

func runUserDisable(e *env, args []string) int {
	return changeUser(e, "disable", args, (*accounts.Service).Disable, "disabled %s and ended all their sessions\n")
}

func runUserEnable(e *env, args []string) int {
	return changeUser(e, "enable", args, (*accounts.Service).Enable, "enabled %s\n")
}

func runUserDelete(e *env, args []string) int {
	return changeUser(e, "delete", args, (*accounts.Service).Delete, "deleted %s and ended all their sessions\n")
}

// changeUser runs a subcommand that makes one change to one user.
func changeUser(e *env, sub string, args []string, change func(*accounts.Service, context.Context, string) error, done string) int {
	c := newStoreCommand(e, "user", sub)
	return c.withUser(args, func(t *storeTools, name string) int {
		if err := change(t.accounts, e.ctx, name); err != nil {
			return c.accountFailure(name, err)
		}
		fmt.Fprintf(e.stdout, done, name)
		return exitOK
	})
}

func runUserList(e *env, args []string) int {
	c := newStoreCommand(e, "user", "list")
	asJSON := c.fs.Bool("json", false, "print JSON instead of a table")
	if code, ok := parseFlagsOnly(c.fs, args, ""); !ok {
		return code
	}
	return c.withStore(func(t *storeTools) int {
		users, err := t.accounts.List(e.ctx)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			return printJSONList(e.stdout, usersJSON(users))
		}
		if len(users) == 0 {
			fmt.Fprintln(e.stdout, "no users yet; add one with: cloakroom user add NAME")
			return exitOK
		}
		return printTable(e.stdout, "NAME\tROLES\tEMAIL\tSTATUS\tCREATED\tPASSWORD CHANGED", users, func(u accounts.User) []string {
			status := "active"
			if u.Disabled {
				status = "disabled"
			}
			return []string{u.Name, orDash(strings.Join(u.Roles, ",")), orDash(u.Email), status, formatTime(u.CreatedAt), formatTime(u.PasswordChangedAt)}
		})
	})
}

// userJSON is a user as `user list --json` prints it.
type userJSON struct {
	Name              string    `json:"name"`
	Email             string    `json:"email,omitempty"`
	Roles             []string  `json:"roles"`
	Disabled          bool      `json:"disabled"`
	CreatedAt         time.Time `json:"created_at"`
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

func usersJSON(users []accounts.User) []userJSON {
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		roles := u.Roles
		if roles == nil {
			roles = []string{}
		}
		out = append(out, userJSON{u.Name, u.Email, roles, u.Disabled, u.CreatedAt, u.PasswordChangedAt})
	}
	return out
}

// obtainPassword reads the password from the first line of stdin, or
// generates one.
func obtainPassword(stdin io.Reader, fromStdin bool) (password string, generated bool, err error) {
	if !fromStdin {
		return generatePassword(), true, nil
	}
	if stdin == nil {
		return "", false, errors.New("--password-stdin: no standard input")
	}
	line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxPasswordBytes+2), maxPasswordBytes+2).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, fmt.Errorf("--password-stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return "", false, errors.New("--password-stdin: standard input held no password")
	case len(line) > maxPasswordBytes:
		return "", false, fmt.Errorf("--password-stdin: the password is longer than %d bytes", maxPasswordBytes)
	}
	return line, false, nil
}

// generatePassword returns 26 random base32 characters: 130 bits from
// crypto/rand, easy to copy and read aloud.
func generatePassword() string { return rand.Text() }

func printGeneratedPassword(w io.Writer, name, password string) {
	fmt.Fprintf(w, "password for %s (shown only now; store it in a password manager):\n  %s\n", name, password)
}

func runUserFactors(e *env, args []string) int {
	c := newStoreCommand(e, "user", "factors")
	return c.withUser(args, func(t *storeTools, name string) int {
		user, err := t.accounts.SessionUserID(e.ctx, name)
		if err != nil {
			return c.fail(err)
		}
		info, err := t.accounts.SecondFactors(e.ctx, user)
		if err != nil {
			return c.accountFailure(name, err)
		}
		passkeys, err := t.accounts.Passkeys(e.ctx, user)
		if err != nil {
			return c.accountFailure(name, err)
		}
		if !info.TOTP && len(passkeys) == 0 {
			fmt.Fprintf(e.stdout, "%s has no second factor: the password alone signs in\n", user)
			return exitOK
		}
		if info.TOTP {
			fmt.Fprintf(e.stdout, "%s: authenticator app (TOTP) since %s, %d recovery codes left\n", user, formatTime(info.Since), info.RecoveryCodesLeft)
		} else {
			fmt.Fprintf(e.stdout, "%s: no authenticator app\n", user)
		}
		for _, p := range passkeys {
			lastUsed, kind := "never", "device-bound"
			if !p.LastUsed.IsZero() {
				lastUsed = formatTime(p.LastUsed)
			}
			if p.Synced {
				kind = "synced"
				if !p.BackedUp {
					kind = "synced (not backed up yet)"
				}
			}
			fmt.Fprintf(e.stdout, "  passkey %q: %s, added %s, last used %s, sign count %d, id %s\n",
				p.Name, kind, formatTime(p.Created), lastUsed, p.SignCount, p.ID)
		}
		return exitOK
	})
}

// runUserResetFactors removes every factor of a user besides the
// password (a lost phone): the app, its recovery codes and the passkeys.
// The user's sessions are left alone: they were signed in with the
// factor, and ending them is a separate decision (sessions revoke).
func runUserResetFactors(e *env, args []string) int {
	c := newStoreCommand(e, "user", "reset-factors")
	yes := c.fs.Bool("yes", false, "confirm: the user signs in with the password alone until they set up a factor again")
	name, code, ok := nameArgument(c.fs, args)
	if !ok {
		return code
	}
	if !*yes {
		return usageError(c.fs, "this removes the authenticator app, recovery codes and passkeys of %s; add --yes to do it", name)
	}
	return c.withStore(func(t *storeTools) int {
		user, err := t.accounts.SessionUserID(e.ctx, name)
		if err != nil {
			return c.fail(err)
		}
		removed, err := t.accounts.ResetFactors(e.ctx, user)
		switch {
		case err != nil:
			return c.accountFailure(name, err)
		case !removed.Any():
			fmt.Fprintf(e.stdout, "%s has no second factor; nothing to reset\n", user)
		default:
			var what []string
			if removed.TOTP {
				what = append(what, "the authenticator app and recovery codes")
			}
			if removed.Passkeys > 0 {
				what = append(what, fmt.Sprintf("%d passkey(s)", removed.Passkeys))
			}
			fmt.Fprintf(e.stdout, "removed %s of %s; they sign in with the password alone until they set up a factor again\n"+
				"their sessions continue; to end them: cloakroom sessions revoke %s\n", strings.Join(what, " and "), user, user)
		}
		return exitOK
	})
}

// runUserRemovePasskey removes one passkey of a user (a lost key, or one
// the user does not recognise).
func runUserRemovePasskey(e *env, args []string) int {
	c := newStoreCommand(e, "user", "remove-passkey")
	yes := c.fs.Bool("yes", false, "confirm: the passkey no longer signs the user in")
	positional, code, ok := parseArgs(c.fs, args)
	if !ok {
		return code
	}
	if len(positional) != 2 {
		return usageError(c.fs, "expected a user name and a passkey id (as user factors shows it), got %d arguments", len(positional))
	}
	name, id := positional[0], positional[1]
	if !*yes {
		return usageError(c.fs, "this removes passkey %s of %s; add --yes to do it", id, name)
	}
	return c.withStore(func(t *storeTools) int {
		user, err := t.accounts.SessionUserID(e.ctx, name)
		if err != nil {
			return c.fail(err)
		}
		err = t.accounts.RemovePasskey(e.ctx, user, id)
		switch {
		case errors.Is(err, accounts.ErrNoSuchPasskey):
			fmt.Fprintf(e.stderr, "cloakroom user remove-passkey: %s has no passkey %s (see cloakroom user factors %s)\n", user, id, user)
			return exitFailure
		case err != nil:
			return c.accountFailure(name, err)
		}
		fmt.Fprintf(e.stdout, "removed passkey %s of %s; it no longer signs them in; their sessions continue\n", id, user)
		return exitOK
	})
}
