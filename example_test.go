package cloakroom_test

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
)

// Example logs a user in, reads the session on a later request and logs
// out; the old cookie is then worthless.
func Example() {
	store := memstore.New(memstore.Config{})
	defer store.Close()
	m, err := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// A real app checks the password first.
		if err := m.Session(r).Login(r.Context(), "alice", cloakroom.LoginOptions{}); err != nil {
			http.Error(w, "login failed", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		m.Session(r).Logout(r.Context())
	})
	mux.Handle("GET /me", m.RequireLogin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", m.Session(r).UserID())
	})))
	handler := m.Handler(mux)

	send := func(method, path, cookie string) *http.Response {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin") // as a browser labels it
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		return w.Result()
	}

	login := send("POST", "/login", "")
	setCookie := login.Header.Get("Set-Cookie")
	cookie := strings.SplitN(setCookie, ";", 2)[0]
	fmt.Println("attributes:", strings.SplitN(setCookie, ";", 2)[1])

	me := send("GET", "/me", cookie)
	body := new(strings.Builder)
	fmt.Fprint(body, me.StatusCode, " ")
	buf := make([]byte, 64)
	n, _ := me.Body.Read(buf)
	fmt.Println(body.String() + string(buf[:n]))

	send("POST", "/logout", cookie)
	fmt.Println("replayed after logout:", send("GET", "/me", cookie).StatusCode)

	// Output:
	// attributes:  Path=/; Secure; HttpOnly; SameSite=Lax
	// 200 hello alice
	// replayed after logout: 401
}

// ExampleCookieValue reads a cookie a server set itself by the session
// cookie's rules: a request carrying it twice is refused, since a sibling
// domain may have planted one of them, and the first is not to be trusted.
func ExampleCookieValue() {
	for _, header := range []string{
		"theme=dark; pending=abc",
		"pending=planted; pending=abc",
		"theme=dark",
	} {
		h := http.Header{"Cookie": {header}}
		v, err := cloakroom.CookieValue(h, "pending")
		switch {
		case errors.Is(err, cloakroom.ErrNoCookie):
			fmt.Println("none")
		case err != nil:
			fmt.Println("refused:", err)
		default:
			fmt.Println("value:", v)
		}
	}
	// Output:
	// value: abc
	// refused: cloakroom: the cookie is sent more than once
	// none
}

// ExampleSession_Devices lists a user's sessions for a "your devices" page.
func ExampleSession_Devices() {
	store := memstore.New(memstore.Config{})
	defer store.Close()
	m, _ := cloakroom.New(cloakroom.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := m.Session(r)
		s.Login(r.Context(), "alice", cloakroom.LoginOptions{})
		devices, _ := s.Devices(r.Context())
		for _, d := range devices {
			fmt.Println(d.Label, "current:", d.Current)
		}
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36")
	h.ServeHTTP(httptest.NewRecorder(), r)
	// Output: Chrome on Linux current: true
}
