package cli

import "fmt"

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
