package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/cloakroom/cloakroom/proxy"
)

// A caller that knows who the user is passes it in a Call; the upstream
// sees the identity headers the proxy set, never the client's.
func ExampleProxy_Serve() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s groups=%s", r.Header.Get("X-Forwarded-User"), r.Header.Get("X-Forwarded-Groups"))
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	px, err := proxy.New(proxy.Config{
		Routes:        []proxy.Route{{Prefix: "/api/", Upstream: target}},
		SessionCookie: "__Host-session",
		ErrorLog:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	r := httptest.NewRequest("GET", "/api/notes", nil)
	r.Header.Set("X-Forwarded-User", "mallory") // a client's claim: removed
	w := httptest.NewRecorder()
	px.Serve(w, r, proxy.Call{Identity: proxy.Identity{User: "alice", Groups: []string{"admin"}}})
	body, _ := io.ReadAll(w.Result().Body)
	fmt.Println(w.Code, string(body))
	// Output: 200 user=alice groups=admin
}
