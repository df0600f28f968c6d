package conduit_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/cloakroom/cloakroom/lab/conduit"
)

// A user signs up the way the SPA does, at /api/users without the
// trailing slash, and the profile echo returns the token the request
// carried.
func Example() {
	app, err := conduit.New(conduit.Config{Secret: []byte("an example secret of 32 bytes!!!")})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(app.API())
	defer srv.Close()

	// The client follows the 307 to /api/users/ with the same POST.
	res, err := http.Post(srv.URL+"/api/users", "application/json",
		strings.NewReader(`{"user":{"username":"jake","email":"jake@jake.jake","password":"jakejake"}}`))
	if err != nil {
		panic(err)
	}
	var signup struct {
		User struct{ Username, Token string }
	}
	json.NewDecoder(res.Body).Decode(&signup)
	res.Body.Close()
	fmt.Println(res.StatusCode, res.Request.URL.Path, signup.User.Username)

	req, _ := http.NewRequest("GET", srv.URL+"/api/user", nil)
	req.Header.Set("Authorization", "Token "+signup.User.Token)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	var me struct{ User struct{ Token string } }
	json.NewDecoder(res.Body).Decode(&me)
	res.Body.Close()
	fmt.Println(res.StatusCode, me.User.Token == signup.User.Token)

	with, without := app.Seen()
	fmt.Println(with, without)
	// Output:
	// 201 /api/users/ jake
	// 200 true
	// 1 2
}
