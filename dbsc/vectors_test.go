package dbsc

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"
)

// TestCloudNuaVectors runs the public DBSC vectors of CloudNua/dbsc-server
// (testdata/vectors, see its README) through this package.
//
// Their failure classes map to our sentinel errors:
//
//	bad-typ            ErrMalformed
//	alg-not-allowed    ErrAlgorithm
//	jwk-missing        ErrKey
//	alg-key-mismatch   ErrKey
//	jwk-forbidden      ErrKey (a refresh proof carrying another key; we
//	                   accept one repeating the stored key, which they
//	                   refuse: it proves nothing more or less)
//	bad-signature      ErrSignature
//	challenge-mismatch verifies; the caller compares Proof.Challenge with
//	                   the challenge it issued (the binder does)
//	iat-out-of-window  verifies; the caller may check Proof.IssuedAt, but
//	                   freshness comes from the single-use, short-lived
//	                   challenge, so the binder need not
//	header parsed=null ErrMalformed
//
// Their refresh vector also expects the claim sub; Proof does not carry
// it, as DBSC does not define it.
func TestCloudNuaVectors(t *testing.T) {
	var keys struct {
		EC, RSA struct{ Public json.RawMessage }
	}
	readVectors(t, "keys.json", &keys)
	stored := map[string]json.RawMessage{"ec": keys.EC.Public, "rsa": keys.RSA.Public}

	var proofs struct {
		Now   int64
		Cases []struct {
			Name, Mode, StoredKey, Challenge, JWT, Expected string
			ClockSkewSec                                    int64
		}
	}
	readVectors(t, "proofs.json", &proofs)
	classes := map[string]error{
		"bad-typ":          ErrMalformed,
		"alg-not-allowed":  ErrAlgorithm,
		"jwk-missing":      ErrKey,
		"alg-key-mismatch": ErrKey,
		"jwk-forbidden":    ErrKey,
		"bad-signature":    ErrSignature,
	}
	passed := 0
	for _, c := range proofs.Cases {
		t.Run("proof/"+c.Name, func(t *testing.T) {
			var proof *Proof
			var err error
			if c.Mode == "refresh" {
				proof, err = VerifyRefresh(c.JWT, stored[c.StoredKey])
			} else {
				proof, err = VerifyRegistration(c.JWT)
			}
			switch c.Expected {
			case "valid":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if proof.Challenge != c.Challenge {
					t.Fatalf("challenge %q, want %q", proof.Challenge, c.Challenge)
				}
			case "challenge-mismatch":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if proof.Challenge == c.Challenge {
					t.Fatal("the caller's challenge check would pass")
				}
			case "iat-out-of-window":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				age := time.Unix(proofs.Now, 0).Sub(proof.IssuedAt)
				if age <= time.Duration(c.ClockSkewSec)*time.Second {
					t.Fatalf("iat %v is within the window", proof.IssuedAt)
				}
			default:
				want, ok := classes[c.Expected]
				if !ok {
					t.Fatalf("unmapped failure class %q", c.Expected)
				}
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
			passed++
		})
	}

	var headers struct {
		Registration, Challenge, Skipped []struct {
			Name, Value string
			Parsed      *struct {
				Algorithms                                []string
				Path, Challenge, Authorization, SessionID string
				Reason                                    string
			}
		}
	}
	readVectors(t, "headers.json", &headers)
	checkHeader := func(kind, name string, parsed bool, err error, equal func() bool) {
		t.Run(kind+"/"+name, func(t *testing.T) {
			switch {
			case !parsed && !errors.Is(err, ErrMalformed):
				t.Fatalf("accepted (%v), want ErrMalformed", err)
			case parsed && err != nil:
				t.Fatalf("refused: %v", err)
			case parsed && !equal():
				t.Fatal("parsed differently")
			}
			passed++
		})
	}
	for _, c := range headers.Registration {
		got, err := ParseRegistration(c.Value)
		checkHeader("registration", c.Name, c.Parsed != nil, err, func() bool {
			want := Registration{c.Parsed.Algorithms, c.Parsed.Path, c.Parsed.Challenge, c.Parsed.Authorization}
			return len(got) == 1 && reflect.DeepEqual(got[0], want)
		})
	}
	for _, c := range headers.Challenge {
		got, err := ParseChallenges(c.Value)
		checkHeader("challenge", c.Name, c.Parsed != nil, err, func() bool {
			return len(got) == 1 && got[0] == Challenge{c.Parsed.Challenge, c.Parsed.SessionID}
		})
	}
	for _, c := range headers.Skipped {
		got, err := ParseSkipped(c.Value)
		checkHeader("skipped", c.Name, c.Parsed != nil, err, func() bool {
			return len(got) == 1 && got[0] == Skipped{c.Parsed.Reason, c.Parsed.SessionID}
		})
	}

	var configs struct {
		Cases []struct {
			Name, Terminate string
			Init            *struct {
				SessionID, RefreshURL string
				Scope                 struct {
					IncludeSite   bool
					Specification []ScopeRule
				}
				Credentials []Credential
			}
			Body json.RawMessage
		}
	}
	readVectors(t, "session-config.json", &configs)
	for _, c := range configs.Cases {
		t.Run("session-config/"+c.Name, func(t *testing.T) {
			var in Instructions
			if c.Init != nil {
				in = Instructions{
					SessionIdentifier: c.Init.SessionID,
					RefreshURL:        c.Init.RefreshURL,
					Scope:             Scope{IncludeSite: c.Init.Scope.IncludeSite, ScopeSpecification: c.Init.Scope.Specification},
					Credentials:       c.Init.Credentials,
				}
			} else {
				in = Stop()
				in.SessionIdentifier = c.Terminate
			}
			body, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(c.Body, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("body %s, want %s", body, c.Body)
			}
			passed++
		})
	}
	total := len(proofs.Cases) + len(headers.Registration) + len(headers.Challenge) + len(headers.Skipped) + len(configs.Cases)
	t.Logf("%d of %d vectors pass", passed, total)
	if total != 28 {
		t.Errorf("%d vectors, want the 28 of the copied commit", total)
	}
}

func readVectors(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
