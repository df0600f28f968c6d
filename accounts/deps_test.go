package accounts_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDatabaseDrivers keeps the backends in their own packages
// (sqliteaccounts, pgaccounts, redisaccounts): accounts itself depends on
// the standard library, the module's internal helpers, the argon2
// implementation, golang.org/x/text (PRECIS user names), the TOTP
// library with its QR encoder and the WebAuthn library with what it
// imports (CBOR, COSE keys, attestation formats) only, so a program that uses one backend,
// or none, links no other database driver.
func TestNoDatabaseDrivers(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case pkg == "github.com/cloakroom/cloakroom/accounts",
			// The module's leaf helpers; anything they pulled in would
			// be listed on its own.
			strings.HasPrefix(pkg, "github.com/cloakroom/cloakroom/internal/"),
			strings.HasPrefix(pkg, "golang.org/x/crypto/"),
			strings.HasPrefix(pkg, "golang.org/x/sys/"),            // argon2 and what it needs
			strings.HasPrefix(pkg, "golang.org/x/text/"),           // PRECIS and Unicode normalisation
			strings.HasPrefix(pkg, "github.com/pquerna/otp"),       // TOTP (RFC 6238)
			strings.HasPrefix(pkg, "github.com/boombuler/barcode"), // its QR codes
			// WebAuthn (passkeys) and its imports.
			strings.HasPrefix(pkg, "github.com/go-webauthn/"),
			strings.HasPrefix(pkg, "github.com/fxamacker/cbor/"),
			strings.HasPrefix(pkg, "github.com/x448/float16"),
			strings.HasPrefix(pkg, "github.com/go-viper/mapstructure/"),
			strings.HasPrefix(pkg, "github.com/google/go-tpm/"),
			strings.HasPrefix(pkg, "github.com/golang-jwt/jwt/"),
			strings.HasPrefix(pkg, "github.com/google/uuid"),
			strings.HasPrefix(pkg, "github.com/tinylib/msgp/"),
			strings.HasPrefix(pkg, "github.com/philhofer/fwd"):
		default:
			t.Errorf("accounts depends on %s; database drivers and other modules belong in the backend packages", pkg)
		}
	}
}
