package vault_test

import (
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/dbsc"
	"github.com/cloakroom/cloakroom/memstore"
)

// A vault capture is a sign-in like any other: its answer (to the app's
// XHR) offers device binding, through the admission, with a challenge for
// the session it started.
func TestCaptureOffersDeviceBinding(t *testing.T) {
	store := memstore.New(memstore.Config{})
	t.Cleanup(func() { store.Close() })
	key := make([]byte, 32)
	rand.Read(key)
	binder, err := dbsc.New(dbsc.Config{Store: store, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	st := newStack(t, stackOptions{
		store:   store,
		manager: func(c *cloakroom.Config) { c.Binding = binder.Check },
		bind:    binder.Offer,
	})
	b := st.browser()
	r := b.register("kim")
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		t.Fatalf("capture: %d %s", r.status, r.body)
	}
	offer := r.header.Get(dbsc.HeaderRegistration)
	regs, err := dbsc.ParseRegistration(offer)
	if err != nil || len(regs) != 1 || regs[0].Challenge == "" || !strings.HasPrefix(regs[0].Path, "/auth/dbsc/") {
		t.Fatalf("the capture's answer offers no binding: %q %v", offer, err)
	}
	if b.whoami() != "kim" {
		t.Fatal("the capture started no session")
	}
}
