package signin_test

import (
	"fmt"
	"net/http"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/signin"
)

// A way in checks the credentials, builds an Identity and admits it; the
// admission applies the rules every sign-in follows.
func ExampleAdmission_Admit() {
	sessions, err := cloakroom.New(cloakroom.Config{Store: memstore.New(memstore.Config{})})
	if err != nil {
		panic(err)
	}
	admission, err := signin.New(signin.Config{Sessions: sessions, MaxSessionsPerUser: 5})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// Pin before the credentials are checked: an account change
		// meanwhile makes the sign-in fail.
		pin, err := sessions.Pin(r.Context(), "alice")
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		// ...check alice's password...
		err = admission.Admit(r.Context(), r, w.Header(), signin.Identity{
			UserID: signin.LocalUser("alice"), Method: signin.Password, AMR: []string{signin.AMRPassword},
			AuthTime: admission.Now(), Pin: pin,
		})
		if err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "signed in")
	})
	_ = sessions.Handler(mux)
}
