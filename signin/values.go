package signin

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/cloakroom/cloakroom"
)

// Session values the sign-in rules write. They are read through this
// package's functions, never by key elsewhere.
const (
	ValueMethod   = "signin.method"
	ValueAMR      = "signin.amr"       // space-separated RFC 8176 values
	ValueAuthTime = "signin.auth_time" // RFC 3339; absent when unknown
	ValueEmail    = "email"
	ValueName     = "name"
	ValueRoles    = "roles" // a JSON list
)

var ruleKeys = []string{ValueMethod, ValueAMR, ValueAuthTime, ValueEmail, ValueName, ValueRoles}

// AuthTime returns when the session's user last proved who they are: at
// sign-in, or at a later step-up ([MarkAuthenticated]). It reports false
// when that is unknown: a provider that sent no auth_time for a silent
// login, or a session created before the rules recorded it.
func AuthTime(s *cloakroom.Session) (time.Time, bool) {
	return s.GetTime(ValueAuthTime)
}

// MarkAuthenticated records that the session's user proved who they are
// at t (a password re-entered for a step-up). The caller renews the
// session afterwards, as for a sign-in.
func MarkAuthenticated(s *cloakroom.Session, t time.Time) {
	s.PutTime(ValueAuthTime, t.UTC())
}

// MethodOf returns how the session's user signed in: "" without a
// logged-in session or for one that signed in before the method was
// recorded.
func MethodOf(s *cloakroom.Session) Method {
	if !s.LoggedIn() {
		return ""
	}
	return Method(s.GetString(ValueMethod))
}

// KindOfSession returns whose user the session's is: a local account, a
// provider's or a vault route's; "" without a logged-in session.
func KindOfSession(s *cloakroom.Session) Kind {
	user := s.UserID()
	if user == "" {
		return ""
	}
	return KindOf(user)
}

// AMR returns the RFC 8176 values recorded at sign-in.
func AMR(s *cloakroom.Session) []string {
	return strings.Fields(s.GetString(ValueAMR))
}

// HasSecondFactor reports whether the session's sign-in used a second
// factor: an amr of otp, hwk, swk or mfa (see [Config.RequireSecondFactor]).
func HasSecondFactor(s *cloakroom.Session) bool {
	return slices.ContainsFunc(AMR(s), func(v string) bool { return slices.Contains(secondFactorAMR, v) })
}

// Roles returns the session's roles (a provider's groups), never nil.
func Roles(s *cloakroom.Session) []string {
	raw, ok := s.Get(ValueRoles)
	if !ok {
		return []string{}
	}
	return parseRoles(raw)
}

// parseRoles decodes the roles value, never nil. Forward auth reads it on
// every decision: the list as json.Marshal writes it (no spaces, printable
// ASCII without escapes) is split in place, in one allocation, and
// anything else goes through encoding/json, so both ways give the same
// roles (FuzzParseRoles).
func parseRoles(raw string) []string {
	if roles, ok := plainRoles(raw); ok {
		return roles
	}
	var roles []string
	if json.Unmarshal([]byte(raw), &roles) != nil || roles == nil {
		return []string{} // no roles: said without building an error
	}
	return roles
}

// plainRoles splits a JSON list of strings of printable ASCII without
// escapes, written without spaces: ["a","b"]. It reports false for any
// other text, including valid JSON it does not handle.
func plainRoles(raw string) ([]string, bool) {
	if len(raw) < 2 || raw[0] != '[' || raw[len(raw)-1] != ']' {
		return nil, false
	}
	body := raw[1 : len(raw)-1]
	if body == "" {
		return []string{}, true
	}
	roles := make([]string, 0, strings.Count(body, ",")+1)
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := 1
		for end < len(body) && body[end] != '"' {
			if c := body[end]; c < 0x20 || c > 0x7e || c == '\\' {
				return nil, false
			}
			end++
		}
		if end == len(body) {
			return nil, false
		}
		roles = append(roles, body[1:end])
		body = body[end+1:]
		if body == "" {
			return roles, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}

// Email returns the session's email address, or "".
func Email(s *cloakroom.Session) string { return s.GetString(ValueEmail) }

// Name returns the session's display name, or "".
func Name(s *cloakroom.Session) string { return s.GetString(ValueName) }

// values returns the session values of id: the rules' own and the way in's.
func (id *Identity) values() map[string]string {
	roles := id.Roles
	if roles == nil {
		roles = []string{}
	}
	rolesJSON, _ := json.Marshal(roles) // a []string always encodes
	v := make(map[string]string, len(id.Values)+6)
	for k, val := range id.Values {
		v[k] = val
	}
	v[ValueMethod] = string(id.Method)
	v[ValueRoles] = string(rolesJSON)
	if id.Email != "" {
		v[ValueEmail] = id.Email
	}
	if id.Name != "" {
		v[ValueName] = id.Name
	}
	if len(id.AMR) > 0 {
		v[ValueAMR] = strings.Join(id.AMR, " ")
	}
	if !id.AuthTime.IsZero() {
		v[ValueAuthTime] = id.AuthTime.UTC().Format(time.RFC3339Nano)
	}
	return v
}
