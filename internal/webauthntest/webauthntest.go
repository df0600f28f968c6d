// Package webauthntest is a software WebAuthn authenticator for tests:
// it holds one discoverable credential and answers real ceremonies
// (signatures, sign counts, flags), so that a relying party can be driven
// without a browser.
package webauthntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator is a software authenticator with one credential. Its
// fields may be changed between ceremonies to make it misbehave.
type Authenticator struct {
	t      testing.TB
	key    *ecdsa.PrivateKey
	ID     []byte // the credential's ID
	Handle []byte // the user handle, from the registration's options
	Origin string
	RPID   string
	Count  uint32
	Backup bool // backup eligible (a synced passkey)
	Verify bool // user verification performed
	// BackedUp is the backup state flag.
	BackedUp bool
}

// New returns an authenticator for the relying party rpID at origin,
// verifying its user.
func New(t testing.TB, rpID, origin string) *Authenticator {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &Authenticator{t: t, key: key, ID: id, Origin: origin, RPID: rpID, Verify: true}
}

var b64 = base64.RawURLEncoding

func (a *Authenticator) flags(attested bool) byte {
	f := byte(0x01) // user present
	if a.Verify {
		f |= 0x04
	}
	if a.Backup {
		f |= 0x08
	}
	if a.BackedUp {
		f |= 0x10
	}
	if attested {
		f |= 0x40
	}
	return f
}

func (a *Authenticator) authData(attested bool) []byte {
	rpHash := sha256.Sum256([]byte(a.RPID))
	d := append(rpHash[:], a.flags(attested))
	d = binary.BigEndian.AppendUint32(d, a.Count)
	if attested {
		d = append(d, make([]byte, 16)...) // AAGUID: none
		d = binary.BigEndian.AppendUint16(d, uint16(len(a.ID)))
		d = append(d, a.ID...)
		x, y := a.key.PublicKey.X.FillBytes(make([]byte, 32)), a.key.PublicKey.Y.FillBytes(make([]byte, 32))
		cose := a.cbor(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
		d = append(d, cose...)
	}
	return d
}

func (a *Authenticator) cbor(v any) []byte {
	a.t.Helper()
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		a.t.Fatal(err)
	}
	b, err := em.Marshal(v)
	if err != nil {
		a.t.Fatal(err)
	}
	return b
}

// Challenge reads the challenge and user handle of a ceremony's options.
func Challenge(t testing.TB, options []byte) (string, []byte) {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
			User      struct {
				ID string `json:"id"`
			} `json:"user"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil || o.PublicKey.Challenge == "" {
		t.Fatalf("options %s: %v", options, err)
	}
	handle, _ := b64.DecodeString(o.PublicKey.User.ID)
	return o.PublicKey.Challenge, handle
}

func (a *Authenticator) clientData(kind, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": kind, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

// Create answers a registration's options.
func (a *Authenticator) Create(options []byte) []byte {
	a.t.Helper()
	c, handle := Challenge(a.t, options)
	a.Handle = handle
	att := a.cbor(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": a.authData(true)})
	b, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", c)),
			"attestationObject": b64.EncodeToString(att), "transports": []string{"internal"},
		},
	})
	return b
}

// Get answers a sign-in's options with the sign count count.
func (a *Authenticator) Get(options []byte, count uint32) []byte {
	a.t.Helper()
	c, _ := Challenge(a.t, options)
	a.Count = count
	auth := a.authData(false)
	cd := a.clientData("webauthn.get", c)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		a.t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{
		"id": b64.EncodeToString(a.ID), "rawId": b64.EncodeToString(a.ID), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(cd), "authenticatorData": b64.EncodeToString(auth),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(a.Handle),
		},
	})
	return b
}
