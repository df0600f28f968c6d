package proxy_test

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/api/=http://127.0.0.1:9000", "/=https://h", "/a=http://[::1]:1/b", "/api/../x=http://h",
		"/api=http://u@h", "/x/=http://h/?q", "/x/=http://h/#f", "//=http://h", "/%2f/=http://h", "=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := proxy.ParseRoute(s)
		if err != nil {
			if !errors.Is(err, proxy.ErrInvalidRoute) {
				t.Fatalf("error %v does not wrap ErrInvalidRoute", err)
			}
			return
		}
		p := r.Prefix
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") ||
			(p != "/" && path.Clean(p)+"/" != p) || strings.ContainsAny(p, "%;\\?#") {
			t.Fatalf("accepted unclean prefix %q from %q", p, s)
		}
		u := r.Upstream
		if u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("accepted upstream %q from %q", u, s)
		}
		again, err := proxy.ParseRoute(r.String())
		if err != nil || again.String() != r.String() {
			t.Fatalf("round trip of %q: %v %q", r.String(), err, again.String())
		}
		if _, err := proxy.New(proxy.Config{Routes: []proxy.Route{r}, SessionCookie: sessionCookieName}); err != nil {
			t.Fatalf("New refuses a parsed route %q: %v", r, err)
		}
	})
}

// FuzzVerify feeds arbitrary tokens and key sets to Verify. Nothing but the
// token the key really signed may ever verify.
func FuzzVerify(f *testing.F) {
	seed := sha256.Sum256([]byte("fuzz key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "gw", Audience: "api"})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	// Signed by hand with a fixed jti: Sign's random jti would differ in
	// every fuzz worker process.
	signingInput := b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"`+signer.KeyID()+`"}`)) + "." +
		b64.EncodeToString([]byte(`{"iss":"gw","aud":"api","sub":"alice","groups":["g"],"iat":1800000000,"nbf":1800000000,"exp":1800000030,"jti":"fixed"}`))
	valid := signingInput + "." + b64.EncodeToString(ed25519.Sign(key, []byte(signingInput)))
	jwks := signer.JWKS()
	parts := strings.Split(valid, ".")
	f.Add(valid, jwks)
	f.Add(parts[0]+"."+parts[1]+".", jwks)
	f.Add("eyJhbGciOiJub25lIn0."+parts[1]+".", jwks)
	f.Add(valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"`+signer.KeyID()+`"}]}`))
	f.Add("a.b.c", []byte(`{"keys":[]}`))
	f.Add("..", []byte(`null`))
	f.Fuzz(func(t *testing.T, token string, set []byte) {
		c, err := upstreamjwt.Verify(token, set, "api", now)
		if err != nil {
			if !errors.Is(err, upstreamjwt.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if token != valid {
			t.Fatalf("forged token verified: %q with %q", token, set)
		}
		if c.Subject != "alice" || c.Audience != "api" || c.ExpiresAt.Sub(c.IssuedAt) > upstreamjwt.MaxTokenTTL {
			t.Fatalf("claims %+v", c)
		}
	})
}

// tomcatParams strips ";..." path parameters, as Tomcat does per segment.
var tomcatParams = regexp.MustCompile(`;[^/]*`)

// FuzzPathSafety sends arbitrary request targets through Proxy to a real
// upstream. Whatever reaches the upstream must stay under the route prefix
// even for an upstream that decodes repeatedly, maps "\" to "/" and drops
// path parameters.
func FuzzPathSafety(f *testing.F) {
	api := newUpstream(f, "api")
	p := newProxy(f, proxy.Config{Routes: []proxy.Route{api.route(f, "/api/")}})
	for _, s := range []string{
		"/api/x", "/api/../admin", "/api/%2e%2e/admin", "/api/..%2fadmin", "/api/..;/admin", "/api/%252e%252e/",
		`/api/..\admin`, "/api/%5c..%5c", "/api//x", "/api/x/", "/api/%c0%ae%c0%ae/", "/api/%ef%bc%8e%ef%bc%8e/", "*", "/api?x=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: gw\r\n\r\n")))
		if err != nil {
			return // net/http would refuse it before any handler
		}
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		p.Serve(rec, req, proxy.Call{})
		if rec.Code != http.StatusOK {
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusNotFound {
				t.Fatalf("%q: status %d", target, rec.Code)
			}
			return
		}
		var e echo
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%q: %v", target, err)
		}
		rawPath, _, _ := strings.Cut(e.RequestURI, "?")
		normalised := rawPath
		for range 3 {
			dec, err := url.PathUnescape(normalised)
			if err != nil {
				break
			}
			normalised = dec
		}
		normalised = strings.ReplaceAll(normalised, `\`, "/")
		normalised = path.Clean(tomcatParams.ReplaceAllString(normalised, ""))
		if normalised != "/api" && !strings.HasPrefix(normalised, "/api/") {
			t.Fatalf("%q reached the upstream as %q, which normalises to %q", target, rawPath, normalised)
		}
	})
}
