package upstreamjwt_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/upstreamjwt"
)

var b64 = base64.RawURLEncoding

// newSigner returns a signer with a fresh key, for issuer
// https://gateway.test and audience "api".
func newSigner(t testing.TB) *upstreamjwt.Signer {
	t.Helper()
	key, err := upstreamjwt.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "https://gateway.test", Audience: "api"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fetchJWKS gets the key set over HTTP, as an upstream would.
func fetchJWKS(t *testing.T, url string) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" ||
		res.Header.Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("JWKS response %d %v", res.StatusCode, res.Header)
	}
	return body
}

func TestVerifyRefusesForgeries(t *testing.T) {
	signer := newSigner(t)
	jwks := signer.JWKS()
	now := time.Unix(1_800_000_000, 0)
	good, err := signer.Sign(upstreamjwt.Identity{User: "alice", Groups: []string{"dev"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	payload, _ := b64.DecodeString(parts[1])

	other := newSigner(t)
	otherToken, _ := other.Sign(upstreamjwt.Identity{User: "alice"}, now)
	otherParts := strings.Split(otherToken, ".")

	header := func(h string) string { return b64.EncodeToString([]byte(h)) }
	kid := signer.KeyID()
	ourHeader := header(`{"alg":"EdDSA","typ":"JWT","kid":"` + kid + `"}`)
	// An HS256 token keyed with the public key, the classic alg confusion.
	var jwk struct {
		Keys []struct{ X string } `json:"keys"`
	}
	_ = json.Unmarshal(jwks, &jwk)
	hsHeader := header(`{"alg":"HS256","typ":"JWT","kid":"` + kid + `"}`)
	mac := hmac.New(sha256.New, []byte(jwk.Keys[0].X))
	mac.Write([]byte(hsHeader + "." + parts[1]))
	hs256 := hsHeader + "." + parts[1] + "." + b64.EncodeToString(mac.Sum(nil))

	tampered := strings.Replace(string(payload), `"sub":"alice"`, `"sub":"admin"`, 1)
	if tampered == string(payload) {
		t.Fatal("payload has no sub")
	}
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"tampered payload", parts[0] + "." + b64.EncodeToString([]byte(tampered)) + "." + parts[2], upstreamjwt.ErrTokenSignature},
		{"wrong kid", header(`{"alg":"EdDSA","typ":"JWT","kid":"nope"}`) + "." + parts[1] + "." + parts[2], upstreamjwt.ErrUnknownKey},
		{"other key, our kid", ourHeader + "." + otherParts[1] + "." + otherParts[2], upstreamjwt.ErrTokenSignature},
		{"other key, its kid", otherToken, upstreamjwt.ErrUnknownKey},
		{"alg none", header(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + ".", upstreamjwt.ErrInvalidToken},
		{"alg none, no kid", header(`{"alg":"none"}`) + "." + parts[1] + ".", upstreamjwt.ErrInvalidToken},
		{"alg HS256", hs256, upstreamjwt.ErrInvalidToken},
		{"alg ES256", header(`{"alg":"ES256","typ":"JWT","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2], upstreamjwt.ErrInvalidToken},
		{"crit", header(`{"alg":"EdDSA","typ":"JWT","kid":"`+kid+`","crit":["b64"]}`) + "." + parts[1] + "." + parts[2], upstreamjwt.ErrInvalidToken},
		{"typ", header(`{"alg":"EdDSA","typ":"dbsc+jwt","kid":"`+kid+`"}`) + "." + parts[1] + "." + parts[2], upstreamjwt.ErrInvalidToken},
		{"no signature", parts[0] + "." + parts[1] + ".", upstreamjwt.ErrTokenSignature},
		{"padded signature", good + "==", upstreamjwt.ErrTokenSignature},
		{"four parts", good + ".x", upstreamjwt.ErrInvalidToken},
		{"two parts", parts[0] + "." + parts[1], upstreamjwt.ErrInvalidToken},
		{"empty", "", upstreamjwt.ErrInvalidToken},
		{"huge", strings.Repeat("a", 20000), upstreamjwt.ErrInvalidToken},
	}
	for _, tc := range cases {
		if _, err := upstreamjwt.Verify(tc.token, jwks, "api", now); !errors.Is(err, tc.want) || !errors.Is(err, upstreamjwt.ErrInvalidToken) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}

	if _, err := upstreamjwt.Verify(good, jwks, "other-api", now); !errors.Is(err, upstreamjwt.ErrTokenAudience) {
		t.Errorf("wrong audience: %v", err)
	}
	if _, err := upstreamjwt.Verify(good, jwks, "api", now.Add(-upstreamjwt.VerifyLeeway-time.Second)); !errors.Is(err, upstreamjwt.ErrTokenNotYetValid) {
		t.Errorf("before nbf: %v", err)
	}
	if _, err := upstreamjwt.Verify(good, []byte(`{"keys":"x"}`), "api", now); !errors.Is(err, upstreamjwt.ErrInvalidJWKS) {
		t.Errorf("bad JWKS: %v", err)
	}
	if _, err := upstreamjwt.Verify(good, jwks, "", now); !errors.Is(err, upstreamjwt.ErrInvalidToken) {
		t.Errorf("empty audience accepted: %v", err)
	}
}

// TestVerifyChecksClaims signs hand-made payloads with the real key, so
// only the claim checks can refuse them.
func TestVerifyChecksClaims(t *testing.T) {
	seed := sha256.Sum256([]byte("claims test key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	signer, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "gw", Audience: "api"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	sign := func(claims string) string {
		h := b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"` + signer.KeyID() + `"}`))
		in := h + "." + b64.EncodeToString([]byte(claims))
		return in + "." + b64.EncodeToString(ed25519.Sign(key, []byte(in)))
	}
	const times = `"iat":1800000000,"nbf":1800000000,"exp":1800000030`
	ok := []string{
		`{"iss":"gw","aud":"api","sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":["x","api"],"sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","iat":1800000000,"nbf":1800000000,"exp":1800000060}`,
	}
	for _, c := range ok {
		if _, err := upstreamjwt.Verify(sign(c), signer.JWKS(), "api", now); err != nil {
			t.Errorf("%s: %v", c, err)
		}
	}
	bad := []string{
		`{"aud":"api","sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":"api","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":"api","sub":"a",` + times + `}`,
		`{"iss":"gw","sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":null,"sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":["x"],"sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":7,"sub":"a","jti":"j",` + times + `}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","nbf":1800000000,"exp":1800000030}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","iat":1800000000,"nbf":1800000000}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","iat":1800000000,"nbf":1800000000,"exp":1800000061}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","iat":1800000000,"nbf":1800000000,"exp":1800000000}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","iat":1800000000,"nbf":1800000000,"exp":1.8e9}`,
		`{"iss":"gw","aud":"api","sub":"a","jti":"j","iat":1800000020,"nbf":1799999990,"exp":1800000040}`,
		`null`,
		`[]`,
		`"x"`,
	}
	for _, c := range bad {
		if _, err := upstreamjwt.Verify(sign(c), signer.JWKS(), "api", now); !errors.Is(err, upstreamjwt.ErrInvalidToken) {
			t.Errorf("%s accepted (%v)", c, err)
		}
	}
}

// TestThumbprintRFC8037 checks the key ID against the test vector of RFC
// 8037 appendix A.3.
func TestThumbprintRFC8037(t *testing.T) {
	d, _ := b64.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	s, err := upstreamjwt.NewSigner(ed25519.NewKeyFromSeed(d), upstreamjwt.SignerConfig{Issuer: "i", Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.KeyID(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("kid = %s, want %s", got, want)
	}
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","use":"sig","alg":"EdDSA"}]}`
	if got := string(s.JWKS()); got != want {
		t.Errorf("JWKS = %s\nwant   %s", got, want)
	}
}

func TestKeyRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old := newSigner(t)
	oldToken, _ := old.Sign(upstreamjwt.Identity{User: "alice"}, now)

	next := newSigner(t)
	if _, err := upstreamjwt.Verify(oldToken, next.JWKS(), "api", now); !errors.Is(err, upstreamjwt.ErrUnknownKey) {
		t.Fatalf("old token before publishing the old key: %v", err)
	}
	var oldPub struct {
		Keys []struct{ X string } `json:"keys"`
	}
	_ = json.Unmarshal(old.JWKS(), &oldPub)
	pub, _ := b64.DecodeString(oldPub.Keys[0].X)
	for range 2 { // the second add is a no-op
		if err := next.AddVerificationKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	jwksSrv := httptest.NewServer(next.JWKSHandler())
	t.Cleanup(jwksSrv.Close)
	jwks := fetchJWKS(t, jwksSrv.URL)
	if n := strings.Count(string(jwks), `"kty"`); n != 2 {
		t.Errorf("JWKS has %d keys, want 2: %s", n, jwks)
	}
	if i, j := strings.Index(string(jwks), next.KeyID()), strings.Index(string(jwks), old.KeyID()); i < 0 || j < 0 || i > j {
		t.Errorf("signing key is not first: %s", jwks)
	}
	newToken, _ := next.Sign(upstreamjwt.Identity{User: "alice"}, now)
	for name, tok := range map[string]string{"old": oldToken, "new": newToken} {
		if _, err := upstreamjwt.Verify(tok, jwks, "api", now); err != nil {
			t.Errorf("%s token: %v", name, err)
		}
	}
	if err := next.AddVerificationKey(pub[:5]); !errors.Is(err, upstreamjwt.ErrInvalidSigner) {
		t.Errorf("short key: %v", err)
	}
}

func TestJWKSHandlerMethods(t *testing.T) {
	srv := httptest.NewServer(newSigner(t).JWKSHandler())
	t.Cleanup(srv.Close)
	res, err := http.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow=%q", res.StatusCode, res.Header.Get("Allow"))
	}
	res, err = http.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ContentLength <= 0 {
		t.Errorf("HEAD: %d length %d", res.StatusCode, res.ContentLength)
	}
}

func TestNewSignerRefusesBadConfig(t *testing.T) {
	key, _ := upstreamjwt.GenerateKey()
	cases := map[string]struct {
		key ed25519.PrivateKey
		cfg upstreamjwt.SignerConfig
	}{
		"TTL over 60s":   {key, upstreamjwt.SignerConfig{Issuer: "i", Audience: "a", TTL: 61 * time.Second}},
		"TTL one hour":   {key, upstreamjwt.SignerConfig{Issuer: "i", Audience: "a", TTL: time.Hour}},
		"negative TTL":   {key, upstreamjwt.SignerConfig{Issuer: "i", Audience: "a", TTL: -time.Second}},
		"fractional TTL": {key, upstreamjwt.SignerConfig{Issuer: "i", Audience: "a", TTL: 1500 * time.Millisecond}},
		"no issuer":      {key, upstreamjwt.SignerConfig{Audience: "a"}},
		"no audience":    {key, upstreamjwt.SignerConfig{Issuer: "i"}},
		"short key":      {key[:32], upstreamjwt.SignerConfig{Issuer: "i", Audience: "a"}},
		"nil key":        {nil, upstreamjwt.SignerConfig{Issuer: "i", Audience: "a"}},
	}
	for name, tc := range cases {
		if _, err := upstreamjwt.NewSigner(tc.key, tc.cfg); !errors.Is(err, upstreamjwt.ErrInvalidSigner) {
			t.Errorf("%s: %v", name, err)
		}
	}
	s, err := upstreamjwt.NewSigner(key, upstreamjwt.SignerConfig{Issuer: "i", Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, _ := s.Sign(upstreamjwt.Identity{User: "u"}, now)
	c, err := upstreamjwt.Verify(tok, s.JWKS(), "a", now)
	if err != nil || c.ExpiresAt.Sub(c.IssuedAt) != upstreamjwt.DefaultTokenTTL {
		t.Errorf("default TTL: %v %v", c.ExpiresAt.Sub(c.IssuedAt), err)
	}
	if _, err := s.Sign(upstreamjwt.Identity{}, now); !errors.Is(err, upstreamjwt.ErrInvalidIdentity) {
		t.Errorf("empty user: %v", err)
	}
}
