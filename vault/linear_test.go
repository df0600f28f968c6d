package vault_test

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/vault"
)

// allocated returns the bytes f allocates: the least of three runs, so an
// allocation elsewhere in the test binary meanwhile does not count.
func allocated(f func()) uint64 {
	best := ^uint64(0)
	for range 3 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		best = min(best, after.TotalAlloc-before.TotalAlloc)
	}
	return best
}

// tokenMembers is {"t":"xxxxxxxx","t":"xxxxxxxx",...} with n members, and
// the byte ranges of each value and of each member.
func tokenMembers(n int) (body []byte, values, members [][2]int) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		m := b.Len()
		b.WriteString(`"t": `)
		v := b.Len()
		b.WriteString(`"xxxxxxxx"`)
		values = append(values, [2]int{v, b.Len()})
		members = append(members, [2]int{m, b.Len()})
	}
	b.WriteByte('}')
	return b.Bytes(), values, members
}

// TestApplyEditsCopiesTheBodyOnce: rewriting n values or dropping n
// members of a body allocates in proportion to the body, not to n times
// the body (it copied the rest of the body for every edit: 1 min 54 s for
// a 1 MiB answer with 39,000 token members).
func TestApplyEditsCopiesTheBodyOnce(t *testing.T) {
	cost := func(n int) (replace, drop uint64) {
		body, values, members := tokenMembers(n)
		want := `{"t": "P"` + strings.Repeat(`, "t": "P"`, n-1) + `}`
		if got := vault.ReplaceRanges(body, values, `"P"`); string(got) != want {
			t.Fatalf("replace %d values: %.80s...", n, got)
		}
		if got := vault.DropMembers(body, members); string(got) != "{}" {
			t.Fatalf("drop %d members: %.80s...", n, got)
		}
		// Every second member, then the last ones: the commas still pair up.
		var odd [][2]int
		for i := 1; i < n; i += 2 {
			odd = append(odd, members[i])
		}
		if got := vault.DropMembers(body, odd); string(got) != `{"t": "xxxxxxxx"`+strings.Repeat(`, "t": "xxxxxxxx"`, (n+1)/2-1)+`}` {
			t.Fatalf("drop every second of %d members: %.80s...", n, got)
		}
		if got := vault.DropMembers(body, members[1:]); string(got) != `{"t": "xxxxxxxx"}` {
			t.Fatalf("drop all but the first of %d members: %.80s...", n, got)
		}
		replace = allocated(func() { vault.ReplaceRanges(body, values, `"P"`) })
		drop = allocated(func() { vault.DropMembers(body, members) })
		return replace, drop
	}
	r1, d1 := cost(2000)
	r2, d2 := cost(4000)
	if float64(r2) > 2.5*float64(r1) || float64(d2) > 2.5*float64(d1) {
		t.Fatalf("twice the edits on twice the body allocate %d and %d bytes, against %d and %d: not linear", r2, d2, r1, d1)
	}
}

// TestFindStringsCostDoesNotGrowWithDepth: the walk does not rebuild the
// path of every string it meets (1 MiB at depth 10,000 took 47 s): each
// string at depth 100 costs what it costs at depth 50.
func TestFindStringsCostDoesNotGrowWithDepth(t *testing.T) {
	p := paths(t, "user.token")
	deep := func(depth int) []byte {
		// Each level is an array whose nested element comes after 100
		// others, so that its path segment is a number of three digits.
		return []byte(strings.Repeat("["+strings.Repeat("0,", 100), depth) +
			`{"user":{"token":"x"},"s":[` + strings.Repeat(`"s",`, 2000) + `"s"]}` + strings.Repeat("]", depth))
	}
	allocs := func(depth int) float64 {
		body := deep(depth)
		return testing.AllocsPerRun(3, func() {
			if _, err := vault.FindStrings(body, p); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a50, a100 := allocs(50), allocs(100); a100 > a50+10 {
		t.Fatalf("allocations at depth 50: %v, at depth 100: %v", a50, a100)
	}
}

// TestDuplicateKeysOnATokenPathAreRefused: two values at a token path,
// whichever way the key is spelt and at whichever level it repeats, make
// the body uncheckable: JSON.parse keeps the last, the vault would have
// captured the first. Duplicates elsewhere are the app's business.
func TestDuplicateKeysOnATokenPathAreRefused(t *testing.T) {
	p := paths(t, "user.token", "list.1.jwt")
	big, _, _ := tokenMembers(39000)
	for _, body := range []string{
		`{"user":{"token":"A","token":"B"}}`,
		`{"user":{"token":"A","t\u006fken":"B"}}`,
		`{"user":{"token":"A"},"user":{"token":"B"}}`,
		`{"user":{"token":"A"},"\u0075ser":5}`,
		`{"user":{"token":{"x":1},"token":"B"}}`,
		`{"list":[0,{"jwt":"A","jwt":"B"}]}`,
		`{"user":` + strings.Replace(string(big), `"t"`, `"token"`, -1) + `}`,
	} {
		if found, err := vault.FindStrings([]byte(body), p); err == nil {
			t.Errorf("%.60s: accepted, %d values", body, len(found))
		}
	}
	for body, n := range map[string]int{
		`{"a":1,"a":2,"user":{"token":"A","b":1,"b":2},"list":[{"jwt":"x","jwt":"y"},{"jwt":"B"}]}`: 2,
		`[{"user":{"token":"A"}},{"user":{"token":"B"}}]`:                                           0,
	} {
		if found, err := vault.FindStrings([]byte(body), p); err != nil || len(found) != n {
			t.Errorf("%s: %d values, %v", body, len(found), err)
		}
	}
}

// TestDeepBodiesAreRefused: the walk keeps one frame per level and stops
// at 512 levels instead of walking any depth the upstream sends.
func TestDeepBodiesAreRefused(t *testing.T) {
	p := paths(t, "user.token")
	for depth, ok := range map[int]bool{511: true, 512: true, 513: false, 10000: false} {
		for _, open := range []string{"[", `{"a":`} {
			closing := "]"
			if open != "[" {
				closing = "}"
			}
			body := strings.Repeat(open, depth) + "1" + strings.Repeat(closing, depth)
			if _, err := vault.FindStrings([]byte(body), p); (err == nil) != ok {
				t.Errorf("%d levels of %s: %v", depth, open, err)
			}
		}
	}
}

// TestGuardLeaksCostIsLinear: the leak guard allocates a few times the
// body, at 1,000 and 2,000 repetitions alike, on the bodies that make it
// work hardest: JWTs written with escapes, "eyJ" repeated without end,
// starts after percent escapes, the literal token escaped.
func TestGuardLeaksCostIsLinear(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
	for name, unit := range map[string]string{
		"escaped JWTs": `"` + escapeJSON(jwt) + `",`,
		"raw JWTs":     `"` + jwt + `",`,
		"eyJ runs":     `eyJeyJeyJeyJ.eyJeyJeyJ.`,
		"percent":      `"%22eyJhbGciOiJ.eyJzdWIiOiIx.c2ln%22",`,
		"literal":      `"tok\u002dvaulted-opaque-123",`,
	} {
		for _, n := range []int{1000, 2000} {
			body := []byte("[" + strings.Repeat(unit, n) + "1]")
			got := allocated(func() { vault.GuardLeaks(body, []byte("tok-vaulted-opaque-123")) })
			if got > 8*uint64(len(body)) {
				t.Errorf("%s: %d bytes allocated for a body of %d", name, got, len(body))
			}
		}
	}
}
