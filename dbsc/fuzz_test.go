package dbsc

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzVerifyRegistration: no input panics, and a proof that is accepted
// verifies again to the same proof, its JWK is already canonical, and it
// verifies as a refresh against that JWK.
func FuzzVerifyRegistration(f *testing.F) {
	es, rs := newES256(f), newRS256(f)
	f.Add(es.registration(f, "c"))
	f.Add(rs.registration(f, "c"))
	f.Add(es.sign(f, map[string]any{"alg": "ES256", "typ": "dbsc+jwt"}, map[string]any{"jti": "c", "iat": "1", "jwk": es.jwk()}))
	var vectors struct{ Cases []struct{ JWT string } }
	if b, err := os.ReadFile("testdata/vectors/proofs.json"); err == nil && json.Unmarshal(b, &vectors) == nil {
		for _, c := range vectors.Cases {
			f.Add(c.JWT)
		}
	}
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		proof, err := VerifyRegistration(token)
		if err != nil {
			if proof != nil {
				t.Fatal("a proof with an error")
			}
			return
		}
		again, err := VerifyRegistration(token)
		if err != nil || !reflect.DeepEqual(again, proof) {
			t.Fatalf("verified once, then %v / %+v", err, again)
		}
		canonical, err := CanonicalJWK(proof.JWK)
		if err != nil || !bytes.Equal(canonical, proof.JWK) {
			t.Fatalf("JWK %s re-parses to %s, %v", proof.JWK, canonical, err)
		}
		refreshed, err := VerifyRefresh(token, proof.JWK)
		if err != nil || !reflect.DeepEqual(refreshed, proof) {
			t.Fatalf("refresh against its own key: %v / %+v", err, refreshed)
		}
		if proof.Algorithm != AlgES256 && proof.Algorithm != AlgRS256 || proof.Challenge == "" {
			t.Fatalf("accepted %+v", proof)
		}
	})
}

// FuzzParseHeaders: no value panics any parser; every string written as an
// sf-string reads back as itself with the bytes an sf-string cannot hold
// left out; and whatever a parser accepts, written again, reads the same.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range []string{`"cv";id="s-1"`, `(ES256 RS256);path="/r";challenge="c";authorization="a"`, `a"b\c`, "\x00\xff\"\\", `quota_exceeded;session_identifier="1"`, `?1;a=:AQ==:, -1.5`} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, value, text string) {
		ParseRegistration(value)
		ParseChallenges(value)
		ParseSkipped(value)
		ParseResponse(value)
		if id, err := ParseSessionID(value); err == nil {
			var quoted strings.Builder
			appendString(&quoted, id)
			again, err := ParseSessionID(quoted.String())
			if err != nil || again != id {
				t.Fatalf("%q read as %q, written and read again as %q, %v", value, id, again, err)
			}
		}
		if len(text) > MaxHeaderSize/8 {
			return // the writers may write what the parsers refuse as oversized
		}
		printable := dropUnprintableBytes(text)
		got, err := ParseChallenges(ChallengeHeader(text, text))
		if err != nil || len(got) != 1 || got[0] != (Challenge{printable, printable}) {
			t.Fatalf("%q round trip: %+v, %v", text, got, err)
		}
		r := Registration{Path: text, Challenge: text, Authorization: text}
		regs, err := ParseRegistration(r.Header())
		want := Registration{Algorithms: []string{AlgES256, AlgRS256}, Path: printable, Challenge: printable, Authorization: printable}
		if err != nil || len(regs) != 1 || !reflect.DeepEqual(regs[0], want) {
			t.Fatalf("%q round trip: %+v, %v", text, regs, err)
		}
	})
}

func dropUnprintableBytes(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x20 && s[i] <= 0x7e {
			b = append(b, s[i])
		}
	}
	return string(b)
}
