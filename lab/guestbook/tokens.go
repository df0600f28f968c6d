package guestbook

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims of a ModeJWT token.
const (
	jwtIssuer   = "guestbook-lab"
	jwtAudience = "guestbook-api"
)

// tokenClaims is what a ModeJWT token says: who, with which roles, until
// when. Nothing on the server remembers an issued token, which is why
// deleting it from the browser does not end it.
type tokenClaims struct {
	Roles []string `json:"roles"`
	jwt.RegisteredClaims
}

type tokenIssuer struct {
	key    []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

func newTokenIssuer(key []byte, ttl time.Duration, now func() time.Time) *tokenIssuer {
	return &tokenIssuer{
		key: key, ttl: ttl, now: now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(jwtIssuer),
			jwt.WithAudience(jwtAudience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(now),
			jwt.WithStrictDecoding(),
		),
	}
}

func (t *tokenIssuer) issue(user string, roles []string) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	var id [16]byte
	rand.Read(id[:])
	claims := tokenClaims{
		Roles: nonNil(roles),
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: jwtIssuer, Subject: user, Audience: jwt.ClaimStrings{jwtAudience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
			ID: base64.RawURLEncoding.EncodeToString(id[:]),
		},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.key)
	return signed, exp, err
}

var errInvalidToken = errors.New("guestbook: invalid token")

func (t *tokenIssuer) verify(token string) (*tokenClaims, error) {
	var c tokenClaims
	_, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil })
	if err != nil || c.Subject == "" {
		return nil, errInvalidToken
	}
	return &c, nil
}
