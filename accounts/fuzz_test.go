package accounts_test

import (
	"errors"
	"strings"
	"testing"
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

// FuzzValidateName: whatever is accepted meets every rule, and case
// variants of a valid name are valid too.
func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"alice", "Alice.Smith", "a@b.c", "_svc-1", ".x", "x.", "-x", "", "a b", "é", strings.Repeat("a", 65)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := accounts.ValidateName(name)
		if err != nil {
			if !errors.Is(err, accounts.ErrInvalidInput) {
				t.Fatalf("error %v does not wrap ErrInvalidInput", err)
			}
			if len(name) > 8 && strings.Contains(err.Error(), name) {
				t.Fatalf("error %q repeats the whole input", err)
			}
			return
		}
		if len(name) < 1 || len(name) > 64 || name[0] == '.' || name[len(name)-1] == '.' || name[0] == '-' {
			t.Fatalf("accepted %q", name)
		}
		for _, c := range []byte(name) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._@-", c) >= 0) {
				t.Fatalf("accepted %q with byte %q", name, c)
			}
		}
		if accounts.ValidateName(strings.ToUpper(name)) != nil || accounts.ValidateName(strings.ToLower(name)) != nil {
			t.Fatalf("a case variant of valid %q is refused", name)
		}
	})
}

// FuzzValidatePassword: accepted passwords are valid UTF-8 of 8 characters
// to 1024 bytes without control characters, and never the user name.
func FuzzValidatePassword(f *testing.F) {
	f.Add("alice", "correct horse")
	f.Add("alice", "ALICE")
	f.Add("bob", "pässwörd")
	f.Add("bob", "short")
	f.Add("bob", "with\nnewline")
	f.Fuzz(func(t *testing.T, name, password string) {
		err := accounts.ValidatePassword(name, password)
		if err != nil {
			if !errors.Is(err, accounts.ErrInvalidInput) {
				t.Fatalf("error %v does not wrap ErrInvalidInput", err)
			}
			return
		}
		if !utf8.ValidString(password) || utf8.RuneCountInString(password) < 8 || len(password) > 1024 ||
			strings.ContainsFunc(password, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }) ||
			(name != "" && strings.EqualFold(name, password)) {
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
// account, and none verifies for another account.
func FuzzDeviceToken(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	issued := accounts.EncodeDeviceToken(key, "alice", []byte("fixed nonce 16 b"))
	f.Add(issued)
	f.Add(issued[:len(issued)-1] + "A")
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Fuzz(func(t *testing.T, token string) {
		nonce, ok := accounts.DeviceNonce(key, "alice", token)
		if ok != (token == issued) {
			t.Fatalf("token %q verifies = %v", token, ok)
		}
		if ok && len(nonce) != 32 {
			t.Fatalf("nonce %q", nonce)
		}
		if _, ok := accounts.DeviceNonce(key, "bob", token); ok {
			t.Fatalf("alice's token %q verifies for bob", token)
		}
	})
}
