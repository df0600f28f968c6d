package storeurl

import (
	"net"
	"net/url"
	"strings"
)

// Network store URLs carry passwords (in the user info, and for PostgreSQL
// possibly as a password= query option). The helpers below keep them out
// of every message this package writes, whatever the underlying client
// puts in its errors.

const passwordMask = "xxxxx"

// secrets returns the passwords written in loc's URL, raw and escaped.
func secrets(loc Location) []string {
	if loc.URL == nil {
		return nil
	}
	var out []string
	add := func(s string) {
		if s != "" && s != passwordMask {
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	if p, ok := loc.URL.User.Password(); ok {
		add(p)
	}
	if q, err := url.ParseQuery(loc.URL.RawQuery); err == nil {
		for _, p := range q["password"] {
			add(p)
		}
	}
	return out
}

// redact replaces every password of loc in s.
func redact(s string, loc Location) string {
	for _, secret := range secrets(loc) {
		s = strings.ReplaceAll(s, secret, passwordMask)
	}
	return s
}

// redactedMessage is err's message without loc's passwords.
func redactedMessage(err error, loc Location) string { return redact(err.Error(), loc) }

// redactedError carries an error whose message had passwords removed. It
// still unwraps to the original, so errors.Is works on it.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// withoutPasswords returns err with loc's passwords removed from its
// message.
func withoutPasswords(err error, loc Location) error {
	if err == nil {
		return nil
	}
	msg := redactedMessage(err, loc)
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// safeString is loc for messages: the URL with every password masked,
// including a password= query option, which url.URL.Redacted keeps.
func safeString(loc Location) string {
	if loc.URL == nil {
		return loc.String()
	}
	return redact(loc.URL.Redacted(), loc)
}

// plaintextToRemote reports whether a connection to loc's host is neither
// encrypted nor confined to this machine.
func plaintextToRemote(loc Location, encrypted bool) bool {
	if encrypted || loc.URL == nil {
		return false
	}
	host := loc.URL.Hostname()
	if host == "localhost" || strings.HasPrefix(host, "/") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
