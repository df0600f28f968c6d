package bench

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cloakroom/cloakroom/internal/jsonscan"
)

// The worst answers a user who can make the app echo their own JSON can
// have the vault walk, about 1 MiB each. Each is checked by the vault's
// scanner (internal/jsonscan, as the vault's findStrings calls it, with a
// capture path and a refresh path) and by json.Valid, one pass of
// encoding/json over the same bytes: bench/report prints the ratio
// against its target.

var scanPaths = [][]string{{"user", "token"}, {"data", "0", "jwt"}}

const scanJWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

// scanBody is a body of about 1 MiB: open, then unit until the MiB is
// full, then closing.
func scanBody(open, unit, sep, closing string) []byte {
	n := (1<<20 - len(open) - len(closing)) / (len(unit) + len(sep))
	return []byte(open + strings.Repeat(unit+sep, n-1) + unit + closing)
}

var scanBodies = sync.OnceValue(func() map[string][]byte {
	return map[string][]byte{
		// The token key repeated at the capture path: the scanner refuses
		// it at the second key (JSON.parse keeps the last, a walk keeping
		// the first would capture another token than the browser sees).
		"DuplicateTokens": scanBody(`{"user":{`, `"token":"`+scanJWT+`"`, ",", `}}`),
		// 10,000 levels, json.Valid's own limit, the rest of the MiB in
		// the innermost array: refused at level 513.
		"Deep": scanBody(strings.Repeat("[", 10000), `"x"`, ",", strings.Repeat("]", 10000)),
		// Walked whole: a key one letter off the path's compared at every
		// member, an escaped JWT skipped at every value.
		"NearMisses": scanBody(`{"user":{`, `"tokem":"\u0065yJhbGciOiJIUzI1NiJ9\u002eeyJzdWIiOiIxIn0"`, ",", `}}`),
	}
})

// scanWant is what the scanner does with each body.
var scanWant = map[string]error{"DuplicateTokens": jsonscan.ErrDuplicate, "Deep": jsonscan.ErrTooDeep, "NearMisses": nil}

func benchScan(b *testing.B, name string) {
	body := scanBodies()[name]
	if _, err := jsonscan.Find(body, scanPaths); !errors.Is(err, scanWant[name]) {
		b.Fatalf("%s: %v, want %v", name, err, scanWant[name])
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		jsonscan.Find(body, scanPaths)
	}
}

func benchValid(b *testing.B, name string) {
	body := scanBodies()[name]
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(body) {
			b.Fatalf("%s is not valid JSON", name)
		}
	}
}

func BenchmarkVaultScanDuplicateTokens(b *testing.B) { benchScan(b, "DuplicateTokens") }
func BenchmarkJSONValidDuplicateTokens(b *testing.B) { benchValid(b, "DuplicateTokens") }
func BenchmarkVaultScanDeep(b *testing.B)            { benchScan(b, "Deep") }
func BenchmarkJSONValidDeep(b *testing.B)            { benchValid(b, "Deep") }
func BenchmarkVaultScanNearMisses(b *testing.B)      { benchScan(b, "NearMisses") }
func BenchmarkJSONValidNearMisses(b *testing.B)      { benchValid(b, "NearMisses") }
