package dbsc_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloakroom/cloakroom/dbsc"
)

// TestCheckAllocations pins the cost of the binding check on a request of
// a bound session with its bound cookie, which every such request pays:
// reading the bound key out of the session's values. The cookie is found
// without parsing the others, and its MAC computed in reused HMAC states;
// a fresh HMAC and the decoded MAC once cost 12.
func TestCheckAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	a := newApp(t, everyStore(t)[0], nil)
	c := a.client(dbsc.AlgES256)
	a.login(c, "alice")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for name, value := range c.Jar() {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	var allocs float64
	var err error
	h := a.manager.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := a.manager.Session(r)
		if !s.LoggedIn() {
			t.Fatalf("not logged in: %v", s.BindingErr())
		}
		allocs = testing.AllocsPerRun(200, func() { err = a.binder.Check(r, s) })
	}))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if err != nil {
		t.Fatal(err)
	}
	if allocs > 1 {
		t.Errorf("%.1f allocations per check, want at most 1", allocs)
	}
}
