package localtls_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloakroom/cloakroom/internal/localtls"
)

func TestClientTrustsOnlyItsCertificate(t *testing.T) {
	cert, err := localtls.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = cert.ServerConfig()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	for _, host := range []string{"localhost", "127.0.0.1"} {
		res, err := cert.Client(nil).Get("https://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(body) != "ok" {
			t.Errorf("%s: body %q", host, body)
		}
	}

	// Another certificate's client refuses this server.
	other, err := localtls.New()
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Client(nil).Get("https://localhost:" + port + "/")
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Errorf("a client trusting another certificate: err = %v, want an unknown-authority error", err)
	}
}

func TestSPKIPinIsTheHashOfThePublicKeyInfo(t *testing.T) {
	cert, err := localtls.New()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	if want := base64.StdEncoding.EncodeToString(sum[:]); cert.SPKIPin != want {
		t.Errorf("SPKIPin = %q, want %q", cert.SPKIPin, want)
	}
	if len(cert.SPKIPin) != 44 {
		t.Errorf("SPKIPin has %d characters, want 44 (32 bytes, padded base64)", len(cert.SPKIPin))
	}
	again, _ := localtls.New()
	if again.SPKIPin == cert.SPKIPin {
		t.Error("two certificates share a key")
	}
}
