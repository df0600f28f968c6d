package oidcbff

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/internal/amrheader"
	"github.com/cloakroom/cloakroom/signin"
)

// Bounds on claims copied into the session and forwarded upstream.
const (
	maxClaimValue = 256
	maxGroups     = 64
)

// identity is who the provider says signed in, mapped to cloakroom's terms.
type identity struct {
	User          string // "{provider}:{claim}"
	Subject       string // the provider's sub
	SID           string // the provider's session ID, if it sent one
	Email         string
	EmailVerified *bool
	Name          string
	Groups        []string
	AMR           []string // RFC 8176 values the provider reported
	// AuthTime is when the user authenticated, for step-up: auth_time, or
	// the completion of a login started with prompt=login; zero when
	// unknown (a silent login).
	AuthTime time.Time
	// Authenticated is when the provider authenticated the user, by its
	// own clock: auth_time, else the earlier of the ID token's iat and the
	// login's start.
	Authenticated time.Time
	IDToken       string
	claims        map[string]any
}

func (id identity) display() string {
	if id.Email != "" {
		return id.Email
	}
	if id.Name != "" {
		return id.Name
	}
	return id.User
}

// UserID returns the cloakroom user ID of a provider's user: the provider
// name, a colon, and the claim value (the namespace rules are package
// signin's).
func UserID(provider, claim string) string { return signin.ProviderUser(provider, claim) }

// maxAMR bounds the amr values kept from an ID token.
const maxAMR = 8

// amrClaim returns the RFC 8176 values of an amr claim that are plain
// short tokens the identity headers can carry (amrheader.Value: no
// comma, which would read as two values there); anything else in it is
// dropped (the claim is advisory).
func amrClaim(v any) []string {
	raw, _ := v.([]any)
	var out []string
	for _, e := range raw {
		s, ok := e.(string)
		if ok && len(s) <= 32 && amrheader.Value(s) && len(out) < maxAMR {
			out = append(out, s)
		}
	}
	return out
}

// needsUserInfo reports whether configured claims are missing from the ID
// token; some providers (and OIDC Core 5.4, when an access token is issued)
// put them in the userinfo response only.
func (p *provider) needsUserInfo(claims map[string]any) bool {
	for _, c := range []string{p.cfg.UserClaim, p.cfg.EmailClaim} {
		if _, ok := claims[c]; !ok {
			return true
		}
	}
	if len(p.cfg.AllowedGroups) > 0 {
		if _, ok := claims[p.cfg.GroupsClaim]; !ok {
			return true
		}
	}
	return false
}

// identity maps claims to an identity, refusing values that would be
// ambiguous in a header or a user ID.
func (p *provider) identity(claims map[string]any) (identity, error) {
	userClaim, err := stringClaim(claims, p.cfg.UserClaim)
	if err != nil || userClaim == "" {
		return identity{}, fmt.Errorf("claim %q (the user ID) is missing or not a plain string", p.cfg.UserClaim)
	}
	id := identity{User: UserID(p.cfg.Name, userClaim), claims: claims}
	if id.Email, err = stringClaim(claims, p.cfg.EmailClaim); err != nil {
		return identity{}, err
	}
	if v, ok := claims["email_verified"]; ok {
		b, isBool := v.(bool)
		if s, isString := v.(string); isString { // some providers send "true"
			b, isBool = s == "true", s == "true" || s == "false"
		}
		if isBool {
			id.EmailVerified = &b
		}
	}
	if id.Name, err = stringClaim(claims, p.cfg.NameClaim); err != nil {
		id.Name = "" // a display name is optional; a bad one is dropped
	}
	id.Groups, err = listClaim(claims, p.cfg.GroupsClaim)
	if err != nil {
		return identity{}, err
	}
	return id, nil
}

// stringClaim returns a string claim ("" when absent), refusing control
// characters, surrounding spaces, commas-free checks aside, and length
// beyond maxClaimValue.
func stringClaim(claims map[string]any, name string) (string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return "", nil
	}
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case float64: // numeric subject IDs exist
		s = strconv.FormatFloat(t, 'f', -1, 64)
	default:
		return "", fmt.Errorf("claim %q is not a string", name)
	}
	if !plainValue(s) {
		return "", fmt.Errorf("claim %q has characters that cannot be forwarded", name)
	}
	return s, nil
}

func listClaim(claims map[string]any, name string) ([]string, error) {
	v, ok := claims[name]
	if !ok || v == nil {
		return []string{}, nil
	}
	var raw []any
	switch t := v.(type) {
	case []any:
		raw = t
	case string:
		raw = []any{t}
	default:
		return nil, fmt.Errorf("claim %q is not a list of strings", name)
	}
	if len(raw) > maxGroups {
		return nil, fmt.Errorf("claim %q has more than %d entries", name, maxGroups)
	}
	out := make([]string, 0, len(raw))
	for _, g := range raw {
		s, ok := g.(string)
		if !ok || !plainValue(s) || strings.Contains(s, ",") {
			return nil, fmt.Errorf("claim %q has an entry that is not a plain string without commas", name)
		}
		out = append(out, s)
	}
	return out, nil
}

func plainValue(s string) bool {
	if len(s) > maxClaimValue || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// allowed applies the provider's access rules. It returns "" when the user
// may sign in, else the reason for the log.
func (p *provider) allowed(id identity) string {
	if len(p.cfg.AllowedDomains) > 0 {
		_, domain, ok := strings.Cut(id.Email, "@")
		switch {
		case !ok || strings.Contains(domain, "@"):
			return "no email to check the allowed domains against"
		case id.EmailVerified != nil && !*id.EmailVerified:
			return "email not verified by the provider"
		case !contains(p.cfg.AllowedDomains, strings.ToLower(domain)):
			return "email domain not allowed"
		}
	}
	if len(p.cfg.AllowedGroups) > 0 {
		member := false
		for _, g := range id.Groups {
			member = member || contains(p.cfg.AllowedGroups, g)
		}
		if !member {
			return "not a member of an allowed group"
		}
	}
	for name, want := range p.cfg.RequiredClaims {
		if !claimHolds(id.claims[name], want) {
			return "required claim " + name + " does not hold"
		}
	}
	return ""
}

func claimHolds(v any, want string) bool {
	switch t := v.(type) {
	case string:
		return t == want
	case bool:
		return strconv.FormatBool(t) == want
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64) == want
	case []any:
		for _, e := range t {
			if claimHolds(e, want) {
				return true
			}
		}
	}
	return false
}

var errNoTokens = errors.New("oidcbff: the session has no provider tokens")
