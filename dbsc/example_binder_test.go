package dbsc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/dbsc/dbsctest"
	"github.com/cloakroom/cloakroom/memstore"
)

// A Binder binds sessions to their browsers' keys: the manager's Binding
// hook is its Check, the sign-in offers registration with Offer, and its
// Handler serves the registration and refresh endpoints. A browser with
// DBSC (here the Go client of package dbsctest) registers at sign-in and
// refreshes its bound cookie; a copy of its cookies stops working when
// the bound cookie expires.
func ExampleBinder() {
	store := memstore.New(memstore.Config{})
	defer store.Close()
	key := make([]byte, 32)
	rand.Read(key)
	binder, err := dbsc.New(dbsc.Config{Store: store, Key: key})
	if err != nil {
		panic(err)
	}
	sessions, err := cloakroom.New(cloakroom.Config{Store: store, Binding: binder.Check})
	if err != nil {
		panic(err)
	}
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.Handle("/auth/dbsc/", binder.Handler(sessions))
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.Session(r)
		// ... check the credentials, then:
		if err := s.Login(r.Context(), "alice", cloakroom.LoginOptions{}); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if err := binder.Offer(r.Context(), w.Header(), s); err != nil {
			// The sign-in stands: the session is not bound, as with a
			// browser without DBSC.
			fmt.Println("not offered:", err)
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		s := sessions.Session(r)
		switch {
		case s.BindingErr() != nil:
			http.Error(w, "bound to another device", http.StatusUnauthorized)
		case !s.LoggedIn():
			http.Error(w, "sign in first", http.StatusUnauthorized)
		default:
			fmt.Fprint(w, s.UserID())
		}
	})
	srv := httptest.NewTLSServer(sessions.Handler(mux))
	defer srv.Close()

	deviceKey, _ := dbsctest.NewKey(dbsc.AlgES256)
	browser := dbsctest.New(srv.URL, srv.Client(), deviceKey)
	ctx := context.Background()
	if _, err := browser.Do(ctx, http.MethodPost, "/login", nil, nil); err != nil {
		panic(err)
	}
	fmt.Println("bound:", browser.Session() != nil)
	r, _ := browser.Get(ctx, "/me")
	fmt.Println("browser:", r.Status, string(r.Body))

	// The session cookie alone, as an infostealer might have copied it
	// without the bound cookie (or after it expired):
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/me", nil)
	session, _ := browser.Cookie(cloakroom.DefaultCookieName)
	req.AddCookie(&http.Cookie{Name: cloakroom.DefaultCookieName, Value: session})
	resp, err := srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("copy:", resp.StatusCode)
	// Output:
	// bound: true
	// browser: 200 alice
	// copy: 401
}
