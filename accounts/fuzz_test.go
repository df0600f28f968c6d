package accounts_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloakroom/cloakroom/accounts"
)

// FuzzParseHash: the parser never panics, refuses with ErrInvalidHash, and
// accepts only canonical strings whose parameters are within bounds.
func FuzzParseHash(f *testing.F) {
	valid, _ := accounts.HashPassword("seed password", testParams)
	for _, seed := range []string{
		valid,
		"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$BmitMmRVk2qm6+YAYLCmWHDb+j3fjUH3AAAAAAAAAAA",
		"$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ$Bo1ismRVk2qm6+YAYLCmWHDb+j3fjUH3",
		"$argon2id$v=19$m=064,t=2,p=1$c29tZXNhbHQ$Bo1ismRVk2qm6+YAYLCmWHDb+j3fjUH3",
		"$argon2id$v=19$m=4294967295,t=4294967295,p=255$c29tZXNhbHQ$Bo1ismRVk2qm6+YAYLCmWHDb+j3fjUH3",
		"$argon2i$v=19$m=64,t=2,p=1$c29tZXNhbHQ$Bo1ismRVk2qm6+YAYLCmWHDb+j3fjUH3",
		"$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ\n$Bo1ismRVk2qm6+YAYLCmWHDb+j3fjUH3",
		"$argon2id$v=19$$$",
		"",
		"$",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := accounts.ParseHash(s)
		if err != nil {
			if !errors.Is(err, accounts.ErrInvalidHash) {
				t.Fatalf("ParseHash error %v does not wrap ErrInvalidHash", err)
			}
			return
		}
		if h.String() != s {
			t.Fatalf("accepted a non-canonical spelling:\n in  %q\n out %q", s, h.String())
		}
		p := h.Params
		if p.Memory > 256*1024 || p.Time < 1 || p.Time > 32 || p.Threads < 1 || p.Threads > 16 ||
			p.Memory < 8*uint32(p.Threads) || len(h.Salt) < 8 || len(h.Salt) > 64 || len(h.Key) < 16 || len(h.Key) > 64 {
			t.Fatalf("accepted parameters out of bounds: %+v", p)
		}
		if int(p.SaltLength) != len(h.Salt) || int(p.KeyLength) != len(h.Key) {
			t.Fatalf("lengths %+v disagree with salt %d / key %d", p, len(h.Salt), len(h.Key))
		}
	})
}

// FuzzValidateName: whatever is accepted meets every rule; its canonical
// form is accepted and canonical; its fold is idempotent, accepted, the
// same as the canonical form's, and for an ASCII name the ASCII lower case
// (the key existing accounts are stored under).
func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"alice", "Alice.Smith", "a@b.c", "_svc-1", ".x", "x.", "-x", "", "a b", "é",
		strings.Repeat("a", 65), "zoë", "ZOË", "zoe\u0308", "zоë", "ｋａｔｅ", "ali：ce", "\u212Aelvin", "İstanbul",
		"ΟΔΟΣ", "山田たろう", "a\u202eb", "ß", "\u0308a", strings.Repeat("İ", 32)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, err := accounts.CanonicalName(name)
		if (err == nil) != (accounts.ValidateName(name) == nil) {
			t.Fatalf("CanonicalName and ValidateName disagree on %q", name)
		}
		if err != nil {
			if !errors.Is(err, accounts.ErrInvalidInput) {
				t.Fatalf("error %v does not wrap ErrInvalidInput", err)
			}
			// Only the mixed-scripts message quotes the name, once its
			// every character is known to be a letter, digit or one of
			// the four symbols.
			if len(name) > 8 && strings.Contains(err.Error(), name) && !strings.Contains(err.Error(), " mixes ") {
				t.Fatalf("error %q repeats the whole input", err)
			}
			return
		}
		if len(canon) < 1 || len(canon) > 64 || canon[0] == '.' || canon[len(canon)-1] == '.' || canon[0] == '-' {
			t.Fatalf("accepted %q as %q", name, canon)
		}
		for _, r := range canon {
			if !(unicode.IsLetter(r) || unicode.Is(unicode.M, r) || '0' <= r && r <= '9' || strings.ContainsRune("._@-", r)) {
				t.Fatalf("accepted %q with %q", canon, r)
			}
		}
		if again, err := accounts.CanonicalName(canon); err != nil || again != canon {
			t.Fatalf("canonical %q of %q is not canonical: %q, %v", canon, name, again, err)
		}
		fold := accounts.FoldName(name)
		if fold != accounts.FoldName(canon) || fold != accounts.FoldName(fold) {
			t.Fatalf("fold of %q is %q, of its canonical form %q, of itself %q", name, fold, accounts.FoldName(canon), accounts.FoldName(fold))
		}
		if err := accounts.ValidateName(fold); err != nil || len(fold) > 64 {
			t.Fatalf("fold %q of accepted %q is refused: %v", fold, name, err)
		}
		if isASCII(name) {
			if canon != name || fold != strings.ToLower(name) {
				t.Fatalf("ASCII %q changed identity: canonical %q, fold %q", name, canon, fold)
			}
			if accounts.ValidateName(strings.ToUpper(name)) != nil || accounts.ValidateName(strings.ToLower(name)) != nil {
				t.Fatalf("a case variant of valid %q is refused", name)
			}
		}
	})
}

func isASCII(s string) bool {
	for _, r := range s {
		if r >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// FuzzValidatePassword: accepted passwords are valid UTF-8 of 8 characters
// to 1024 bytes without control characters, never the user name, never
// on the common list, never one character repeated; refusals match
// ErrWeakPassword and do not repeat the password.
func FuzzValidatePassword(f *testing.F) {
	f.Add("alice", "correct horse")
	f.Add("alice", "ALICE")
	f.Add("alice", "Alice2026!")
	f.Add("bob", "pässwörd")
	f.Add("bob", "short")
	f.Add("bob", "with\nnewline")
	f.Add("bob", "Password")
	f.Add("bob", "        ")
	f.Add("zoë", "ZOË 1999")
	f.Fuzz(func(t *testing.T, name, password string) {
		err := accounts.ValidatePassword(name, password)
		if err != nil {
			if !errors.Is(err, accounts.ErrInvalidInput) || !errors.Is(err, accounts.ErrWeakPassword) {
				t.Fatalf("error %v does not match ErrInvalidInput and ErrWeakPassword", err)
			}
			if len(password) >= 12 && strings.Contains(err.Error(), password) {
				t.Fatalf("error %q repeats the password", err)
			}
			return
		}
		lower := strings.ToLower(password)
		if !utf8.ValidString(password) || utf8.RuneCountInString(password) < 8 || len(password) > 1024 ||
			strings.ContainsFunc(password, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }) ||
			(name != "" && strings.EqualFold(name, password)) ||
			accounts.IsCommonPassword(lower) || strings.Count(password, string([]rune(password)[:1])) == utf8.RuneCountInString(password) {
			t.Fatalf("accepted %q for %q", password, name)
		}
	})
}

// FuzzClientKey: any input maps to a short key, the same every time.
func FuzzClientKey(f *testing.F) {
	for _, seed := range []string{"192.0.2.1", "[2001:db8::1]:80", "fe80::1%eth0", "", "x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ip string) {
		k := accounts.ClientKey(ip)
		if len(k) > 70 || k != accounts.ClientKey(ip) {
			t.Fatalf("ClientKey(%q) = %q", ip, k)
		}
	})
}

// FuzzDeviceToken: no string but the issued token verifies for the
// account, and none verifies for another account, another password
// generation, or once its lifetime is over.
func FuzzDeviceToken(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	generation := time.Date(2026, 11, 28, 9, 0, 0, 123456000, time.UTC)
	issued := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	const lifetime = 90 * 24 * time.Hour
	token := accounts.EncodeDeviceToken(key, "Zoë", generation, []byte("fixed nonce 16 b"), issued)
	f.Add(token)
	f.Add(token[:len(token)-1] + "A")
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Add(strings.Repeat("A", len(token)))
	f.Fuzz(func(t *testing.T, s string) {
		now := issued.Add(time.Hour)
		nonce, ok := accounts.DeviceNonce(key, "ZOË", generation, s, now, lifetime)
		if ok != (s == token) {
			t.Fatalf("token %q verifies = %v", s, ok)
		}
		if ok && string(nonce) != "fixed nonce 16 b" {
			t.Fatalf("nonce %q", nonce)
		}
		if _, ok := accounts.DeviceNonce(key, "zoe", generation, s, now, lifetime); ok {
			t.Fatalf("zoë's token %q verifies for zoe", s)
		}
		if _, ok := accounts.DeviceNonce(key, "zoë", generation.Add(time.Microsecond), s, now, lifetime); ok {
			t.Fatalf("token %q verifies after a password change", s)
		}
		if _, ok := accounts.DeviceNonce(key, "zoë", generation, s, issued.Add(lifetime), lifetime); ok {
			t.Fatalf("token %q verifies at the end of its lifetime", s)
		}
	})
}
