package dbsc

import "encoding/json"

// Instructions are the session instructions JSON a registration or a
// refresh answers with: the session's identifier, where to refresh, which
// requests it covers and which cookies it keeps alive.
type Instructions struct {
	SessionIdentifier        string       `json:"session_identifier"`
	RefreshURL               string       `json:"refresh_url,omitempty"` // "" means the URL of the request answered
	Continue                 *bool        `json:"continue,omitempty"`    // nil means true; false ends the session in the browser
	Scope                    Scope        `json:"scope"`
	Credentials              []Credential `json:"credentials"` // at least one: Chromium refuses a session without
	AllowedRefreshInitiators []string     `json:"allowed_refresh_initiators,omitempty"`
}

// Scope is the part of the web a session covers.
type Scope struct {
	Origin             string      `json:"origin,omitempty"` // "" means the origin of the URL answered
	IncludeSite        bool        `json:"include_site"`     // false: the origin only; true: its whole site (only for an origin whose host is the site itself; Chromium refuses it on localhost)
	ScopeSpecification []ScopeRule `json:"scope_specification,omitempty"`
}

// ScopeRule includes or excludes requests from a Scope.
type ScopeRule struct {
	Type   string `json:"type"`             // "include" or "exclude"
	Domain string `json:"domain,omitempty"` // "" means every domain ("*")
	Path   string `json:"path,omitempty"`   // "" means every path ("/")
}

// Credential names a cookie a session keeps alive.
type Credential struct {
	Type       string `json:"type"` // "cookie"; "" is written as "cookie"
	Name       string `json:"name"`
	Attributes string `json:"attributes,omitempty"` // the Set-Cookie attributes it is issued with, without Max-Age and Expires (Chromium refuses the session over them), such as "Path=/; Secure; HttpOnly; SameSite=Lax"
}

// Stop returns the instructions that end a session in the browser, so it
// stops refreshing: {"continue":false}. Set SessionIdentifier to the
// session ended: Chromium 156 ends a session on a bare {"continue":false}
// too, but as an error (InvalidSessionId), and on
// {"session_identifier":"s","continue":false} as the server's request.
func Stop() Instructions {
	stop := false
	return Instructions{Continue: &stop}
}

// MarshalJSON writes the instructions as the specification has them:
// instructions that end the session carry only session_identifier (when
// set) and continue; others always carry credentials (an empty list for
// none), and a credential's type defaults to "cookie".
func (in Instructions) MarshalJSON() ([]byte, error) {
	if in.Continue != nil && !*in.Continue {
		return json.Marshal(struct {
			SessionIdentifier string `json:"session_identifier,omitempty"`
			Continue          bool   `json:"continue"`
		}{in.SessionIdentifier, false})
	}
	type plain Instructions // without this method
	out := plain(in)
	out.Credentials = make([]Credential, len(in.Credentials))
	for i, c := range in.Credentials {
		if c.Type == "" {
			c.Type = "cookie"
		}
		out.Credentials[i] = c
	}
	return json.Marshal(out)
}
