package dbsc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
)

// TestRefusals: every kind of proof the verifier must refuse, with the
// sentinel error it is refused with.
func TestRefusals(t *testing.T) {
	s := newES256(t)
	jwk := s.jwk()
	header := func(extra map[string]any) map[string]any {
		h := map[string]any{"alg": "ES256", "typ": "dbsc+jwt", "jwk": jwk}
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	withJWK := func(change map[string]any) map[string]any {
		k := map[string]any{}
		for name, v := range jwk {
			k[name] = v
		}
		for name, v := range change {
			k[name] = v
		}
		return k
	}
	payload := map[string]any{"jti": "c"}
	good := s.sign(t, header(nil), payload)
	parts := strings.Split(good, ".")

	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	smallRSA := make([]byte, 128) // 1024 bits
	rand.Read(smallRSA)
	smallRSA[0] |= 0x80
	smallRSA[127] |= 1
	bigRSA := make([]byte, MaxRSABits/8+1) // 8200 bits
	rand.Read(bigRSA)
	bigRSA[0] |= 0x80
	bigRSA[len(bigRSA)-1] |= 1
	rsaJWK := newRS256(t).jwk()
	evenModulus := newRS256(t).rsa.N.Bytes()
	evenModulus = append([]byte(nil), evenModulus...)
	evenModulus[len(evenModulus)-1] &^= 1
	other := newES256(t)

	// An ES256 signature in DER, as crypto/ecdsa writes it by default.
	input := parts[0] + "." + parts[1]
	digest := sha256.Sum256([]byte(input))
	der, _ := ecdsa.SignASN1(rand.Reader, s.ec, digest[:])

	// The last character of a 64-byte signature holds 4 bits and 2 zero
	// bits; setting one of those makes a non-canonical encoding of the
	// same bytes.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sig := parts[2]
	strayBits := sig[:len(sig)-1] + string(alphabet[strings.IndexByte(alphabet, sig[len(sig)-1])|1])

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", unsigned(header(map[string]any{"alg": "none"}), payload), ErrAlgorithm},
		{"alg HS256", s.sign(t, header(map[string]any{"alg": "HS256"}), payload), ErrAlgorithm},
		{"alg PS256", s.sign(t, header(map[string]any{"alg": "PS256"}), payload), ErrAlgorithm},
		{"alg ES384", s.sign(t, header(map[string]any{"alg": "ES384"}), payload), ErrAlgorithm},
		{"alg es256 in lower case", s.sign(t, header(map[string]any{"alg": "es256"}), payload), ErrAlgorithm},
		{"no alg", s.sign(t, header(map[string]any{"alg": nil}), payload), ErrMalformed},
		{"typ JWT", s.sign(t, header(map[string]any{"typ": "JWT"}), payload), ErrMalformed},
		{"no typ", s.sign(t, header(map[string]any{"typ": nil}), payload), ErrMalformed},
		{"crit", s.sign(t, header(map[string]any{"crit": []string{"b64"}, "b64": false}), payload), ErrMalformed},
		{"no jti", s.sign(t, header(nil), map[string]any{"aud": "x"}), ErrMalformed},
		{"empty jti", s.sign(t, header(nil), map[string]any{"jti": ""}), ErrMalformed},
		{"jti a number", s.sign(t, header(nil), map[string]any{"jti": 7}), ErrMalformed},
		{"authorization a number", s.sign(t, header(nil), map[string]any{"jti": "c", "authorization": 1}), ErrMalformed},
		{"iat negative", s.sign(t, header(nil), map[string]any{"jti": "c", "iat": -1}), ErrMalformed},
		{"iat fraction", s.sign(t, header(nil), map[string]any{"jti": "c", "iat": 1.5}), ErrMalformed},
		{"iat beyond year 9999", s.sign(t, header(nil), map[string]any{"jti": "c", "iat": 999999999999}), ErrMalformed},
		{"repeated header key", s.signRaw(t, `{"alg":"ES256","typ":"dbsc+jwt","alg":"none","jwk":`+string(s.jwkJSON())+`}`, `{"jti":"c"}`), ErrMalformed},
		{"repeated payload key", s.signRaw(t, mustJSON(header(nil)), `{"jti":"c","jti":"d"}`), ErrMalformed},
		{"repeated jwk key", s.signRaw(t, `{"alg":"ES256","typ":"dbsc+jwt","jwk":`+strings.Replace(string(s.jwkJSON()), `{`, `{"kty":"RSA",`, 1)+`}`, `{"jti":"c"}`), ErrKey},
		{"invalid UTF-8", s.signRaw(t, mustJSON(header(nil)), "{\"jti\":\"c\xff\"}"), ErrMalformed},
		{"payload an array", s.signRaw(t, mustJSON(header(nil)), `["jti"]`), ErrMalformed},
		{"data after the header", s.signRaw(t, mustJSON(header(nil))+`{}`, `{"jti":"c"}`), ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"newline in base64", parts[0] + "." + parts[1][:4] + "\n" + parts[1][4:] + "." + parts[2], ErrMalformed},
		{"standard base64 alphabet", parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+", ErrMalformed},
		{"stray bits in the signature", input + "." + strayBits, ErrMalformed},
		{"oversized", s.sign(t, header(nil), map[string]any{"jti": strings.Repeat("c", MaxProofSize)}), ErrMalformed},
		{"empty", "", ErrMalformed},
		{"no jwk", s.sign(t, header(map[string]any{"jwk": nil}), payload), ErrKey},
		{"jwk a string", s.sign(t, header(map[string]any{"jwk": "key"}), payload), ErrKey},
		{"jwk curve P-384", s.sign(t, header(map[string]any{"jwk": withJWK(map[string]any{"crv": "P-384",
			"x": b64.EncodeToString(p384.X.FillBytes(make([]byte, 48))), "y": b64.EncodeToString(p384.Y.FillBytes(make([]byte, 48)))})}), payload), ErrKey},
		{"point off the curve", s.sign(t, header(map[string]any{"jwk": withJWK(map[string]any{"y": b64.EncodeToString(new(big.Int).Add(s.ec.Y, big.NewInt(1)).FillBytes(make([]byte, 32)))})}), payload), ErrKey},
		{"short coordinate", s.sign(t, header(map[string]any{"jwk": withJWK(map[string]any{"x": b64.EncodeToString(s.ec.X.Bytes()[1:])})}), payload), ErrKey},
		{"private key in the jwk", s.sign(t, header(map[string]any{"jwk": withJWK(map[string]any{"d": b64.EncodeToString(s.ec.D.Bytes())})}), payload), ErrKey},
		{"jwk alg other than the key's", s.sign(t, header(map[string]any{"jwk": withJWK(map[string]any{"alg": "RS256"})}), payload), ErrKey},
		{"jwk kty oct", s.sign(t, header(map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}), payload), ErrKey},
		{"ES256 proof with an RSA key", s.sign(t, header(map[string]any{"jwk": rsaJWK}), payload), ErrKey},
		{"RSA 1024 bits", s.sign(t, header(map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": b64.EncodeToString(smallRSA), "e": "AQAB"}}), payload), ErrKey},
		{"RSA 8200 bits", s.sign(t, header(map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": b64.EncodeToString(bigRSA), "e": "AQAB"}}), payload), ErrKey},
		{"RSA even modulus", s.sign(t, header(map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": b64.EncodeToString(evenModulus), "e": "AQAB"}}), payload), ErrKey},
		{"RSA exponent 3", s.sign(t, header(map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": rsaJWK["n"], "e": "Aw"}}), payload), ErrKey},
		{"RSA exponent with a leading zero", s.sign(t, header(map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": rsaJWK["n"], "e": "AAEAAQ"}}), payload), ErrKey},
		{"RSA modulus with a leading zero", s.sign(t, header(map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA", "n": b64.EncodeToString(append([]byte{0}, newRS256(t).rsa.N.Bytes()...)), "e": "AQAB"}}), payload), ErrKey},
		{"header and payload keys differ", s.sign(t, header(nil), map[string]any{"jti": "c", "jwk": other.jwk()}), ErrKey},
		{"signed by another key than it carries", other.sign(t, header(nil), payload), ErrSignature},
		{"DER signature", input + "." + b64.EncodeToString(der), ErrSignature},
		{"empty signature", input + ".", ErrSignature},
		{"RS256 signature of the wrong length", truncateSignature(t, newRS256(t).registration(t, "c")), ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			proof, err := VerifyRegistration(c.token)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v (%+v), want %v", err, proof, c.want)
			}
			if proof != nil {
				t.Fatal("a proof came back with the error")
			}
		})
	}
	if _, err := VerifyRegistration(good); err != nil {
		t.Fatalf("the untouched proof: %v", err)
	}
}

// TestReplayIsTheCallersJob: the verifier keeps no state, so the same
// proof verifies twice. Refusing a replayed challenge (single use, short
// life) is the binder's job; this test pins that down so no caller
// believes otherwise.
func TestReplayIsTheCallersJob(t *testing.T) {
	s := newES256(t)
	token := s.registration(t, "c")
	for range 2 {
		if _, err := VerifyRegistration(token); err != nil {
			t.Fatal(err)
		}
	}
}

// unsigned returns a JWT with an empty signature, as alg none has.
func unsigned(header, payload map[string]any) string {
	return b64.EncodeToString([]byte(mustJSON(header))) + "." + b64.EncodeToString([]byte(mustJSON(payload))) + "."
}

// truncateSignature drops the last byte of a token's signature.
func truncateSignature(t *testing.T, token string) string {
	i := strings.LastIndexByte(token, '.')
	sig, err := b64.DecodeString(token[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return token[:i+1] + b64.EncodeToString(sig[:len(sig)-1])
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
