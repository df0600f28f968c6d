package seal_test

import (
	"fmt"

	"github.com/cloakroom/cloakroom/internal/seal"
)

// The gateway seals an upstream token before storing it in a session, bound
// to that session, and opens it when it attaches the token to a call.
func ExampleKeyring() {
	// In production: seal.Load("/etc/cloakroom/vault.keys"), a file with
	// one "<key id> <base64 key>" line per key, the sealing key first.
	line, _ := seal.NewKeyLine("2026-11")
	keys, err := seal.Parse([]byte(line))
	if err != nil {
		panic(err)
	}

	sealed := keys.Seal([]byte("eyJhbGciOiJIUzI1NiJ9.e30.sig"), []byte("vault:session-1"))
	token, err := keys.Open(sealed, []byte("vault:session-1"))
	fmt.Println(string(token), err)

	// The same sealed value, copied into another session, does not open.
	_, err = keys.Open(sealed, []byte("vault:session-2"))
	fmt.Println(err != nil)
	fmt.Println(keys)
	// Output:
	// eyJhbGciOiJIUzI1NiJ9.e30.sig <nil>
	// true
	// seal.Keyring[2026-11]
}
