package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
)

// Users can name their devices, through the JSON API and on the account
// page, so that two with the same browser can be told apart; names are
// checked, need the CSRF proof like every state change, and reach only the
// user's own devices.
func TestNameDevices(t *testing.T) {
	e := newEnv(t)
	b := e.minted("alice")
	other := e.minted("alice")
	bobs := e.minted("bob")
	otherHandle := handleOf(t, e, other)
	csrf := b.csrf()
	named := func(handle string) string {
		t.Helper()
		var v struct{ Sessions []cloakroom.Device }
		if err := json.Unmarshal([]byte(b.get("/auth/sessions").Text), &v); err != nil {
			t.Fatal(err)
		}
		for _, d := range v.Sessions {
			if d.Handle == handle {
				return d.Name
			}
		}
		t.Fatalf("no device %s", handle)
		return ""
	}
	put := func(who *browser, handle, name string, extra ...string) response {
		body, _ := json.Marshal(map[string]string{"name": name})
		return who.do(http.MethodPut, "/auth/sessions/"+handle+"/name", "application/json", string(body), extra...)
	}
	if r := put(b, otherHandle, "Phone", "Sec-Fetch-Site", "", "X-CSRF-Token", ""); r.Status != http.StatusForbidden {
		t.Errorf("naming without a CSRF proof: %d, want 403", r.Status)
	}
	if r := put(b, otherHandle, "Phone", "X-CSRF-Token", csrf); r.Status != http.StatusNoContent {
		t.Fatalf("naming: %d %s", r.Status, r.Text)
	}
	if got := named(otherHandle); got != "Phone" {
		t.Errorf("name %q, want Phone", got)
	}
	for _, c := range []struct {
		who    *browser
		handle string
		name   string
		status int
		code   string
	}{
		{b, otherHandle, strings.Repeat("x", cloakroom.MaxDeviceName+1), http.StatusBadRequest, "invalid_input"},
		{b, otherHandle, "new\nline", http.StatusBadRequest, "invalid_input"},
		{b, "not*a*handle", "x", http.StatusBadRequest, "bad_request"},
		{b, "AAAAAAAAAAAAAAAAAAAAAA", "x", http.StatusNotFound, "not_found"},
		{bobs, otherHandle, "mine now", http.StatusNotFound, "not_found"},
	} {
		r := put(c.who, c.handle, c.name, "X-CSRF-Token", c.who.csrf())
		if r.Status != c.status || !strings.Contains(r.Text, `"error":"`+c.code+`"`) {
			t.Errorf("naming %s %q: %d %s, want %d %s", c.handle, c.name, r.Status, r.Text, c.status, c.code)
		}
	}
	if got := named(otherHandle); got != "Phone" {
		t.Errorf("a refused naming changed the name to %q", got)
	}

	// The account page shows the name above the browser, and names too.
	nav := []string{"Sec-Fetch-Mode", "navigate", "Accept", "text/html"}
	page := b.get("/auth/account", nav...)
	if !strings.Contains(page.Text, `<strong class="device-name">Phone</strong>`) {
		t.Errorf("the account page does not show the name")
	}
	r := b.postForm("/auth/account/name", url.Values{"handle": {otherHandle}, "name": {"Work laptop"}, "csrf_token": {csrf}}, nav...)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account?done=named" {
		t.Fatalf("naming on the page: %d, Location %q", r.Status, r.Header.Get("Location"))
	}
	if got := named(otherHandle); got != "Work laptop" {
		t.Errorf("name %q, want Work laptop", got)
	}
	r = b.postForm("/auth/account/name", url.Values{"handle": {otherHandle}, "name": {strings.Repeat("y", 41)}, "csrf_token": {csrf}}, nav...)
	if r.Status != http.StatusBadRequest || !strings.Contains(r.Text, "at most 40 printable characters") || !strings.Contains(r.Text, `id="device-`+otherHandle+`"`) {
		t.Errorf("a bad name on the page: %d, want 400 with the message on the account page", r.Status)
	}
	if r := b.postForm("/auth/account/name", url.Values{"handle": {otherHandle}, "name": {"x"}}, nav...); r.Status != http.StatusForbidden {
		t.Errorf("naming on the page without the form's token: %d, want 403", r.Status)
	}
	if !other.loggedIn() {
		t.Error("naming ended the named device's session")
	}
}
