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
	var roles []string
	if !ok || json.Unmarshal([]byte(raw), &roles) != nil || roles == nil {
		return []string{} // no roles: said without building an error
	}
	return roles
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
