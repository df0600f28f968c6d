package accounts_test

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

func TestDefaultParamsAreASVS(t *testing.T) {
	want := accounts.Params{Memory: 19456, Time: 2, Threads: 1, SaltLength: 16, KeyLength: 32}
	if got := accounts.DefaultParams(); got != want {
		t.Fatalf("DefaultParams() = %+v, want the ASVS 5.0 / OWASP argon2id parameters %+v", got, want)
	}
	// A Service built without test hooks uses them.
	svc := accounts.New(memaccounts.New(), accounts.Config{RevokeSessions: accounts.NoSessions, Throttle: memaccounts.NewThrottle(0)})
	if got := svc.HashParams(); got != want {
		t.Fatalf("Service.HashParams() = %+v, want %+v", got, want)
	}
	// ...and writes them into stored hashes (checked in TestTimingDoesNotRevealUsers,
	// which pays for default-cost hashes anyway).
}

var phcPattern = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)

func TestHashFormat(t *testing.T) {
	encoded, err := accounts.HashPassword("correct horse battery staple", testParams)
	if err != nil {
		t.Fatal(err)
	}
	m := phcPattern.FindStringSubmatch(encoded)
	if m == nil {
		t.Fatalf("hash %q is not PHC argon2id", encoded)
	}
	if m[1] != "64" || m[2] != "1" || m[3] != "1" {
		t.Errorf("parameters m=%s,t=%s,p=%s, want 64,1,1", m[1], m[2], m[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(m[4])
	key, err2 := base64.RawStdEncoding.DecodeString(m[5])
	if err1 != nil || err2 != nil || len(salt) != 16 || len(key) != 32 {
		t.Errorf("salt %d bytes, key %d bytes (%v, %v); want 16 and 32", len(salt), len(key), err1, err2)
	}

	// Fresh salt every time.
	again, _ := accounts.HashPassword("correct horse battery staple", testParams)
	if again == encoded {
		t.Error("two hashes of one password are equal: the salt is not random")
	}

	h, err := accounts.ParseHash(encoded)
	if err != nil {
		t.Fatal(err)
	}
	if h.String() != encoded || h.Params != testParams {
		t.Errorf("ParseHash round trip: %q %+v", h.String(), h.Params)
	}
}

func TestVerifyPassword(t *testing.T) {
	const password = "pässwörd mit Leerzeichen 🔑"
	encoded, err := accounts.HashPassword(password, testParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{password, true},
		{strings.ToUpper(password), false},
		{password + " ", false},
		{password[:len(password)-1], false},
		{"", false},
	} {
		got, err := accounts.VerifyPassword(encoded, tc.password)
		if err != nil || got != tc.want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", tc.password, got, err, tc.want)
		}
	}
}

// TestKnownAnswer checks a hash computed by the argon2 reference
// implementation (password "password", salt "somesalt", argon2id, t=2,
// m=64 KiB, p=1, 24-byte key): it catches parameters passed in the wrong
// order, which a round trip through our own code would not.
func TestKnownAnswer(t *testing.T) {
	key, _ := hex.DecodeString("068d62b26455936aa6ebe60060b0a65870dbfa3ddf8d41f7")
	encoded := "$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ$" + base64.RawStdEncoding.EncodeToString(key)
	ok, err := accounts.VerifyPassword(encoded, "password")
	if err != nil || !ok {
		t.Fatalf("VerifyPassword(reference vector) = %v, %v; want true", ok, err)
	}
	h, _ := accounts.ParseHash(encoded)
	if h.String() != encoded {
		t.Errorf("re-encoded as %q", h.String())
	}
}

func TestNeedsRehash(t *testing.T) {
	encoded, _ := accounts.HashPassword("long enough", testParams)
	if accounts.NeedsRehash(encoded, testParams) {
		t.Error("NeedsRehash with the same parameters")
	}
	stronger := testParams
	stronger.Time++
	if !accounts.NeedsRehash(encoded, stronger) {
		t.Error("NeedsRehash false after raising t")
	}
	if !accounts.NeedsRehash(encoded, accounts.DefaultParams()) {
		t.Error("NeedsRehash false against DefaultParams")
	}
	if !accounts.NeedsRehash("garbage", testParams) {
		t.Error("NeedsRehash false for an unparsable hash")
	}
}

func TestTamperedHashRefused(t *testing.T) {
	const password = "long enough password"
	encoded, err := accounts.HashPassword(password, testParams)
	if err != nil {
		t.Fatal(err)
	}
	m := phcPattern.FindStringSubmatch(encoded)
	salt, key := m[4], m[5]
	build := func(params string) string { return "$argon2id$v=19$" + params + "$" + salt + "$" + key }

	// Parameters changed within bounds: the hash parses but the password no
	// longer matches, because the key was derived with the original ones.
	for _, params := range []string{"m=128,t=1,p=1", "m=64,t=2,p=1", "m=64,t=1,p=2", "m=8,t=1,p=1"} {
		ok, err := accounts.VerifyPassword(build(params), password)
		if err != nil || ok {
			t.Errorf("tampered %s: VerifyPassword = %v, %v; want false, nil", params, ok, err)
		}
	}
	// Salt or key altered: no match.
	flipped := []byte(key)
	flipped[0] ^= 1 // 'A' <-> 'B' etc.: still base64
	if flipped[0] == '+' || flipped[0] == '/' {
		flipped[0] = 'A'
	}
	if ok, _ := accounts.VerifyPassword("$argon2id$v=19$m=64,t=1,p=1$"+salt+"$"+string(flipped), password); ok {
		t.Error("a hash with an altered key verified")
	}

	// Parameters out of bounds or spelled oddly: refused before any work.
	refused := []string{
		build("m=268435456,t=1,p=1"), // 256 GiB
		build("m=262145,t=1,p=1"),    // just above 256 MiB
		build("m=64,t=33,p=1"),
		build("m=64,t=0,p=1"),
		build("m=64,t=1,p=0"),
		build("m=64,t=1,p=17"),
		build("m=64,t=1,p=256"),
		build("m=7,t=1,p=1"),
		build("m=64,t=1,p=9"), // m below 8 KiB per lane
		build("m=064,t=1,p=1"),
		build("m=+64,t=1,p=1"),
		build("m=64,t=1,p=1,k=1"),
		build("t=1,m=64,p=1"),
		build("m=64,t=1"),
		build("m=4294967296,t=1,p=1"),
		build("m= 64,t=1,p=1"),
		"$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "=",
		"$argon2id$v=19$m=64,t=1,p=1$" + salt[:8] + "$" + key,  // 6-byte salt
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:16], // 12-byte key
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$-" + key[1:], // base64url
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:20] + "\n" + key[20:],
		"$argon2id$v=19$m=64,t=1,p=1$" + salt[:10] + "\r\n" + salt[10:] + "$" + key,
		"argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		" " + encoded,
		encoded + "\n",
		"",
		"$2a$10$abcdefghijklmnopqrstuuJ0E1qN9Ty6o6HRs3kdB5R4jWWlBlcCO", // bcrypt
		strings.Repeat("$argon2id", 100),
	}
	for _, bad := range refused {
		if _, err := accounts.ParseHash(bad); !errors.Is(err, accounts.ErrInvalidHash) {
			t.Errorf("ParseHash(%q) = %v, want ErrInvalidHash", bad, err)
		}
		if ok, err := accounts.VerifyPassword(bad, password); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want refusal", bad, ok, err)
		}
	}
	// Non-canonical base64 (non-zero trailing bits) is refused: one hash,
	// one spelling.
	last := salt[len(salt)-1]
	alt := strings.IndexByte("AQgw", last) // 16-byte salts end in one of these
	if alt >= 0 {
		noncanonical := salt[:len(salt)-1] + string("BRhx"[alt])
		if _, err := accounts.ParseHash("$argon2id$v=19$m=64,t=1,p=1$" + noncanonical + "$" + key); err == nil {
			t.Errorf("non-canonical salt encoding %q accepted", noncanonical)
		}
	}
}

func TestHashPasswordRefusesBadParams(t *testing.T) {
	for _, p := range []accounts.Params{
		{},
		{Memory: 64, Time: 1, Threads: 1, SaltLength: 4, KeyLength: 32},
		{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 8},
		{Memory: 1 << 30, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32},
	} {
		if _, err := accounts.HashPassword("whatever long", p); !errors.Is(err, accounts.ErrInvalidHash) {
			t.Errorf("HashPassword with %+v: %v, want ErrInvalidHash", p, err)
		}
	}
}

func ExampleHashPassword() {
	encoded, err := accounts.HashPassword("correct horse battery staple", accounts.DefaultParams())
	if err != nil {
		panic(err)
	}
	fmt.Println(encoded[:len("$argon2id$v=19$m=19456,t=2,p=1$")])
	ok, _ := accounts.VerifyPassword(encoded, "correct horse battery staple")
	fmt.Println(ok)
	// Output:
	// $argon2id$v=19$m=19456,t=2,p=1$
	// true
}
