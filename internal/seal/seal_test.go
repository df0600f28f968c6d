package seal_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom/internal/seal"
)

func keyLine(t testing.TB, id string) string {
	t.Helper()
	l, err := seal.NewKeyLine(id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func parse(t testing.TB, lines ...string) *seal.Keyring {
	t.Helper()
	k, err := seal.Parse([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTripAndAADBinding(t *testing.T) {
	k := parse(t, keyLine(t, "k1"))
	s := k.Seal([]byte("eyJ.secret.token"), []byte("vault:session-a"))
	if strings.Contains(s, "secret") || !strings.HasPrefix(s, "v1.k1.") {
		t.Fatalf("sealed form %q", s)
	}
	got, err := k.Open(s, []byte("vault:session-a"))
	if err != nil || string(got) != "eyJ.secret.token" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Moved to another session, or used for another purpose: refused.
	for _, aad := range []string{"vault:session-b", "oidc:session-a", ""} {
		if _, err := k.Open(s, []byte(aad)); !errors.Is(err, seal.ErrCannotOpen) {
			t.Fatalf("Open with aad %q: %v, want ErrCannotOpen", aad, err)
		}
	}
	// Two seals of the same secret differ (random nonce).
	if k.Seal([]byte("x"), nil) == k.Seal([]byte("x"), nil) {
		t.Fatal("sealing is deterministic")
	}
}

func TestRotation(t *testing.T) {
	old := keyLine(t, "old")
	before := parse(t, old)
	sealedOld := before.Seal([]byte("token-1"), []byte("a"))

	// Prepend a new key, keep the old one: new seals use the new key, old
	// ones still open.
	rotated := parse(t, "# rotated 2026-11", keyLine(t, "new"), "", old)
	if ids := rotated.KeyIDs(); fmt.Sprint(ids) != "[new old]" {
		t.Fatalf("KeyIDs = %v", ids)
	}
	if got, err := rotated.Open(sealedOld, []byte("a")); err != nil || string(got) != "token-1" {
		t.Fatalf("old value after rotation: %q %v", got, err)
	}
	sealedNew := rotated.Seal([]byte("token-2"), []byte("a"))
	if !strings.HasPrefix(sealedNew, "v1.new.") {
		t.Fatalf("new seal uses %q", sealedNew)
	}
	// The old keyring does not know the new key.
	if _, err := before.Open(sealedNew, []byte("a")); !errors.Is(err, seal.ErrUnknownKey) || !errors.Is(err, seal.ErrCannotOpen) {
		t.Fatalf("open with retired keyring: %v", err)
	}
	// A value relabelled to another key id does not open.
	relabelled := "v1.new." + strings.TrimPrefix(sealedOld, "v1.old.")
	if _, err := rotated.Open(relabelled, []byte("a")); !errors.Is(err, seal.ErrCannotOpen) {
		t.Fatalf("relabelled value: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	good := keyLine(t, "k1")
	_, b64, _ := strings.Cut(good, " ")
	for name, data := range map[string]string{
		"empty":        "",
		"comments":     "# nothing\n\n",
		"one field":    "k1",
		"three fields": good + " extra",
		"bad id":       "k.1 " + b64,
		"long id":      strings.Repeat("k", 33) + " " + b64,
		"short key":    "k1 c2hvcnQ=",
		"not base64":   "k1 !!!!",
		"dup id":       good + "\n" + keyLine(t, "k1"),
		"dup key":      good + "\nk2 " + b64,
	} {
		_, err := seal.Parse([]byte(data))
		if !errors.Is(err, seal.ErrKeyFile) {
			t.Errorf("%s: %v, want ErrKeyFile", name, err)
		}
		if err != nil && strings.Contains(err.Error(), b64) {
			t.Errorf("%s: error quotes key material: %v", name, err)
		}
	}
}

func TestLoadRefusesWorldReadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.keys")
	if err := os.WriteFile(path, []byte(keyLine(t, "k1")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := seal.Load(path); !errors.Is(err, seal.ErrKeyFile) {
		t.Fatalf("Load of a 0644 file: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := seal.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seal.Load(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, seal.ErrKeyFile) {
		t.Fatalf("missing file: %v", err)
	}
	// Printing the keyring never shows key material.
	_, b64, _ := strings.Cut(keyLine(t, "x"), " ")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v", k, k, k)} {
		if s != "seal.Keyring[k1]" && !strings.HasPrefix(s, "seal.Keyring[k1] seal.Keyring[k1]") {
			t.Fatalf("printed keyring: %q", s)
		}
		if strings.Contains(s, b64) {
			t.Fatal("key material printed")
		}
	}
}

func TestOpenMalformed(t *testing.T) {
	k := parse(t, keyLine(t, "k1"))
	good := k.Seal([]byte("t"), nil)
	for _, s := range []string{"", "v1", "v1.k1", "v2.k1.AAAA", "v1.k1.", "v1.k1.AAAA", "v1..AAAA", "v1.k1.not*base64", good + "=", good[:len(good)-2]} {
		_, err := k.Open(s, nil)
		if !errors.Is(err, seal.ErrCannotOpen) {
			t.Errorf("Open(%q) = %v", s, err)
		}
	}
	if _, err := k.Open("v1.k1.AAAA", nil); !errors.Is(err, seal.ErrMalformed) {
		t.Errorf("short payload: %v", err)
	}
	if got, err := k.Open(good, nil); err != nil || !bytes.Equal(got, []byte("t")) {
		t.Fatalf("good: %q %v", got, err)
	}
}

func TestGenerateSealsAndOpens(t *testing.T) {
	k, err := seal.Generate("g1")
	if err != nil {
		t.Fatal(err)
	}
	if ids := k.KeyIDs(); len(ids) != 1 || ids[0] != "g1" {
		t.Fatalf("key ids %v", ids)
	}
	got, err := k.Open(k.Seal([]byte("x"), []byte("aad")), []byte("aad"))
	if err != nil || string(got) != "x" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := seal.Generate("bad id"); !errors.Is(err, seal.ErrKeyFile) {
		t.Fatalf("Generate with a bad id: %v, want ErrKeyFile", err)
	}
	other, _ := seal.Generate("g1")
	if _, err := other.Open(k.Seal([]byte("x"), nil), nil); err == nil {
		t.Fatal("two generated keyrings share a key")
	}
}
