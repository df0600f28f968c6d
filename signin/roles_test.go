package signin

import (
	"encoding/json"
	"slices"
	"testing"
)

// The fast path must give exactly what encoding/json gives, for the lists
// json.Marshal writes and for every text it accepts.
func TestParseRolesMatchesJSON(t *testing.T) {
	for _, roles := range [][]string{{}, {""}, {"admin"}, {"dev", "ops", "a,b", "x y"}, {"<b>&"}, {"é", "\x00", `q"uote`, `back\slash`}} {
		raw, err := json.Marshal(roles)
		if err != nil {
			t.Fatal(err)
		}
		if got := parseRoles(string(raw)); !slices.Equal(got, roles) {
			t.Errorf("parseRoles(%s) = %q, want %q", raw, got, roles)
		}
	}
	for _, raw := range []string{"", "null", "[", "]", "[,]", `["a",]`, `["a" ,"b"]`, `[ "a"]`, `["a"`, `"a"]`, `["a""b"]`, `[1]`, `{}`, `["\u0061"]`} {
		want := []string{}
		var decoded []string
		if json.Unmarshal([]byte(raw), &decoded) == nil && decoded != nil {
			want = decoded
		}
		if got := parseRoles(raw); got == nil || !slices.Equal(got, want) {
			t.Errorf("parseRoles(%q) = %#v, want %#v", raw, got, want)
		}
	}
}

func TestParseRolesAllocations(t *testing.T) {
	for raw, want := range map[string]float64{`[]`: 0, `["dev","ops"]`: 1} {
		if got := testing.AllocsPerRun(100, func() { parseRoles(raw) }); got != want {
			t.Errorf("parseRoles(%s): %v allocations, want %v", raw, got, want)
		}
	}
}

// FuzzParseRoles checks that whatever the fast path accepts, encoding/json
// decodes to the same list, and that parseRoles never returns nil.
func FuzzParseRoles(f *testing.F) {
	for _, seed := range []string{`[]`, `["a"]`, `["a","b"]`, `[""]`, `["a\"b"]`, `["é"]`, `null`, `["a",]`, `[ "a" ]`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := parseRoles(raw)
		if got == nil {
			t.Fatalf("parseRoles(%q) = nil", raw)
		}
		fast, ok := plainRoles(raw)
		if !ok {
			return
		}
		var want []string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatalf("plainRoles accepted %q, which encoding/json refuses: %v", raw, err)
		}
		if !slices.Equal(fast, want) || !slices.Equal(got, want) {
			t.Fatalf("%q: fast path %q, parseRoles %q, encoding/json %q", raw, fast, got, want)
		}
	})
}
