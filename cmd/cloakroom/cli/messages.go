package cli

import (
	"fmt"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/cmd/cloakroom/storeurl"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
	"github.com/cloakroom/cloakroom/vault"
)

// explained is an error whose message is rewritten for the person at the
// terminal; the error it replaces stays in the chain for errors.Is.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// explain returns err with the message format says instead of its own.
func explain(err error, format string, args ...any) error {
	return &explained{msg: fmt.Sprintf(format, args...), err: err}
}

// rejections are the sentinels the packages wrap around a refused input,
// followed by what is wrong with it ("proxy: invalid route: ..."). At the
// terminal the setting's name already says which input, so only the
// reason is printed.
var rejections = []error{
	storeurl.ErrInvalidURL,
	proxy.ErrInvalidRoute,
	proxy.ErrInvalidConfig,
	accounts.ErrInvalidInput,
	vault.ErrInvalidConfig,
	oidcbff.ErrInvalidConfig,
	seal.ErrKeyFile,
	dbsc.ErrInvalidConfig,
	upstreamjwt.ErrInvalidSigner,
	cloakroom.ErrInvalidConfig,
	cloakroom.ErrInvalidInput,
}

// outcomes are sentinels whose words are the message ("accounts: account
// store unavailable"); at the terminal they lose their package name.
var outcomes = []error{
	accounts.ErrStoreUnavailable,
	accounts.ErrUserExists,
	accounts.ErrNoSuchUser,
	accounts.ErrConflict,
	accounts.ErrInvalidHash,
	cloakroom.ErrStoreUnavailable,
	cloakroom.ErrNotFound,
	cloakroom.ErrConflict,
}

// plainMessage is err's message as the CLI prints it: what to fix, without
// the Go package names of the sentinels in it. The error itself keeps
// them, so errors.Is still works on it.
func plainMessage(err error) string {
	msg := err.Error()
	for _, s := range rejections {
		msg = strings.ReplaceAll(msg, s.Error()+": ", "")
	}
	for _, s := range append(rejections, outcomes...) {
		if _, words, ok := strings.Cut(s.Error(), ": "); ok {
			msg = strings.ReplaceAll(msg, s.Error(), words)
		}
	}
	return msg
}
