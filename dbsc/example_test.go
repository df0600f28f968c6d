package dbsc_test

import (
	"errors"
	"fmt"

	"github.com/cloakroom/cloakroom/dbsc"
)

func ExampleVerifyRegistration() {
	// A registration proof as a browser sends it in Secure-Session-Response
	// (this one is from the public test vectors in testdata/vectors).
	header := `"eyJ0eXAiOiJkYnNjK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6IktlbklXVmlZbTIyc29OZjF6TFJmQjA0Rnl4dzNYbDBucDI2VU82RW5zMEEiLCJ5IjoiRWcxOWYtSC1qSEgyS1FkUmlPMng4ZTUxbml6MVpicXI0Q0ZZRDJWTTVvbyIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJ2ZWN0b3ItcmVnaXN0cmF0aW9uLWNoYWxsZW5nZS0xIn0.ho3ISej1KmPS4qRlOmlVCknNFjKQNKojob7bveRxBDr3lZDcTZryt5X0PKVd6o4HYdyx-ct8F5ELlfnS11xxBQ"`
	token, err := dbsc.ParseResponse(header)
	if err != nil {
		fmt.Println(err)
		return
	}
	proof, err := dbsc.VerifyRegistration(token)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The caller checks the challenge is one it issued and has not seen
	// used, then stores proof.JWK with the session.
	fmt.Println(proof.Algorithm, proof.Challenge == "vector-registration-challenge-1")
	fmt.Println(string(proof.JWK))

	// A refresh proof signed by another key is refused.
	_, err = dbsc.VerifyRefresh(token, []byte(`{"kty":"EC","crv":"P-256","x":"E_FYRsBBjJBMgZmOjCPlQ6YD_4UoXJ1CKLyE8RmY-CQ","y":"wcOdmwaqh_Xi0xN4E9H8CX8yq1nSikvD0Cj-oFdapCs"}`))
	fmt.Println(errors.Is(err, dbsc.ErrKey))
	// Output:
	// ES256 true
	// {"crv":"P-256","kty":"EC","x":"KenIWViYm22soNf1zLRfB04Fyxw3Xl0np26UO6Ens0A","y":"Eg19f-H-jHH2KQdRiO2x8e51niz1Zbqr4CFYD2VM5oo"}
	// true
}

func ExampleRegistration_Header() {
	offer := dbsc.Registration{Path: "/dbsc/register", Challenge: "c2VjcmV0LWNoYWxsZW5nZQ"}
	fmt.Println(dbsc.HeaderRegistration + ": " + offer.Header())
	fmt.Println(dbsc.HeaderChallenge + ": " + dbsc.ChallengeHeader("bmV4dC1jaGFsbGVuZ2U", "session-1"))
	// Output:
	// Secure-Session-Registration: (ES256 RS256);path="/dbsc/register";challenge="c2VjcmV0LWNoYWxsZW5nZQ"
	// Secure-Session-Challenge: "bmV4dC1jaGFsbGVuZ2U";id="session-1"
}
