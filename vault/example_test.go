package vault_test

import (
	"fmt"

	"github.com/cloakroom/cloakroom/vault"
)

// A vault route is described with the same syntax as the flags of
// `cloakroom serve`: which answers carry the token, and how the backend
// wants it back.
func ExampleParseCapture() {
	login, err := vault.ParseCapture("POST /api/users/login user.token")
	if err != nil {
		panic(err)
	}
	register, _ := vault.ParseCapture("POST /api/users user.token")
	header, scheme, _, _ := vault.ParseHeader("Authorization: Token")
	route := vault.Route{
		Prefix:    "/api/",
		Capture:   []vault.Capture{login, register},
		UserClaim: "id",
		Header:    header,
		Scheme:    scheme,
	}
	fmt.Println(route.Capture[0].Method, route.Capture[0].Path, route.Capture[0].Field)
	fmt.Printf("%s: %s <token>\n", route.Header, route.Scheme)
	// Output:
	// POST /api/users/login user.token
	// Authorization: Token <token>
}
