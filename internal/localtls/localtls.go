// Package localtls makes a throwaway self-signed TLS certificate for
// localhost and 127.0.0.1, with the SPKI pin that makes Chromium trust it
// (--ignore-certificate-errors-spki-list) and the Go client settings that
// trust it, for the browser tests and the lab.
//
// Device Bound Session Credentials need a real HTTPS origin: Chromium does
// not register a session over plain http://localhost, and it does not
// register one with --ignore-certificate-errors alone. A pinned test
// certificate is the way in.
package localtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"time"
)

// Lifetime is how long a certificate from [New] stays valid: long enough
// for a lab left running for a day, short enough to be useless later.
const Lifetime = 7 * 24 * time.Hour

// ErrGenerate wraps the failures of [New].
var ErrGenerate = errors.New("cannot make a local test certificate")

// Cert is a self-signed certificate for localhost, 127.0.0.1 and ::1.
type Cert struct {
	// TLS is the certificate with its private key, for a server.
	TLS tls.Certificate
	// Leaf is the parsed certificate.
	Leaf *x509.Certificate
	// SPKIPin is the base64 (standard, padded) SHA-256 of the
	// certificate's SubjectPublicKeyInfo: the value Chromium's
	// --ignore-certificate-errors-spki-list takes.
	SPKIPin string
}

// New makes a fresh certificate with an ECDSA P-256 key.
func New() (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"cloakroom test certificate"}},
		// An hour back covers a clock that moved between here and the browser.
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(Lifetime),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGenerate, err)
	}
	return &Cert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Leaf:    leaf,
		SPKIPin: SPKIPin(leaf),
	}, nil
}

// SPKIPin returns the pin of cert for Chromium's
// --ignore-certificate-errors-spki-list.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// ServerConfig returns a server configuration that presents the
// certificate, TLS 1.2 or later.
func (c *Cert) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.TLS}, MinVersion: tls.VersionTLS12}
}

// ClientConfig returns a client configuration that trusts this
// certificate and nothing else.
func (c *Cert) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Client returns an HTTP client that trusts this certificate, keeps
// cookies in jar (nil: none) and does not follow redirects, so that a test
// sees the status the server answered.
func (c *Cert) Client(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:       jar,
		Transport: &http.Transport{TLSClientConfig: c.ClientConfig(), ForceAttemptHTTP2: true},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
