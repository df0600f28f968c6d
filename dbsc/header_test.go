package dbsc

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRegistrationHeader(t *testing.T) {
	for _, c := range []struct {
		r    Registration
		want string
	}{
		{Registration{Path: "/dbsc/register", Challenge: "abc"}, `(ES256 RS256);path="/dbsc/register";challenge="abc"`},
		{Registration{Algorithms: []string{AlgES256}, Path: "reg", Challenge: `c"\`, Authorization: "ac"}, `(ES256);path="reg";challenge="c\"\\";authorization="ac"`},
		{Registration{Algorithms: []string{"ES256", "not a token"}, Path: "p\r\nX-Evil: 1", Challenge: "c\x00é"}, `(ES256);path="pX-Evil: 1";challenge="c"`},
	} {
		if got := c.r.Header(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.r, got, c.want)
		}
	}
	r := Registration{Algorithms: []string{AlgES256, AlgRS256}, Path: "/dbsc/register", Challenge: `a "b" \c`, Authorization: "z"}
	got, err := ParseRegistration(r.Header())
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], r) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}

func TestParseRegistration(t *testing.T) {
	// The specification's examples.
	got, err := ParseRegistration(`(ES256);path="reg1";challenge="cv1";authorization="a", (RS256);path="reg2";challenge="cv2";authorization="b"`)
	want := []Registration{{[]string{"ES256"}, "reg1", "cv1", "a"}, {[]string{"RS256"}, "reg2", "cv2", "b"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v, %v", got, err)
	}
	got, err = ParseRegistration(`(ES256 none);path="reg1";challenge="cv1";provider_key="abc";provider_session_id="idp_id";provider_url="https://id_origin.example.com";n=1;d=1.5;b;y=?0;bin=:AQID:`)
	if err != nil || len(got) != 1 || got[0].Path != "reg1" || !reflect.DeepEqual(got[0].Algorithms, []string{"ES256"}) {
		t.Fatalf("%+v, %v", got, err)
	}
	for _, bad := range []string{"", " ", "ES256;path=\"r\"", `(ES256);path="r",`, `(ES256);path="r";challenge=c`, `(ES256);path="r";challenge="c`,
		`(ES256);path="r";challenge="\n"`, `(ES256);path="r";challenge="\x"`, `(ES256);path="r";Challenge="c"`, `(ES256)x;path="r"`,
		`("ES256");path="r"`, `(ES256);path="r";authorization=1`, `(ES256);path="r";challenge="é"`, strings.Repeat(" ", MaxHeaderSize+1)} {
		if got, err := ParseRegistration(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %+v, %v", bad, got, err)
		}
	}
}

func TestChallengeHeader(t *testing.T) {
	if got := ChallengeHeader("c", "sid"); got != `"c";id="sid"` {
		t.Fatal(got)
	}
	got, err := ParseChallenges(`"c1";id="session 1", "c2";id="session 2";other=x`)
	if err != nil || !reflect.DeepEqual(got, []Challenge{{"c1", "session 1"}, {"c2", "session 2"}}) {
		t.Fatalf("%+v, %v", got, err)
	}
	for _, bad := range []string{`"c";id=sid`, `c;id="s"`, `("c");id="s"`, `"c" "d"`} {
		if _, err := ParseChallenges(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseSessionIDAndResponse(t *testing.T) {
	// Quoted as the specification has it, or raw as Chromium 156 sends it.
	for value, want := range map[string]string{`"session-id"`: "session-id", ` "a\"b";x=1 `: `a"b`,
		`session-id`: "session-id", `9-x_Y.z`: "9-x_Y.z", `a b"c`: `a b"c`, " s1\t": "s1"} {
		if got, err := ParseSessionID(value); err != nil || got != want {
			t.Errorf("%q: %q, %v", value, got, err)
		}
	}
	for _, bad := range []string{``, " ", `""`, `"a", "b"`, `"a";`, `"a`, "\"a\tb\"", "a\x00b", "caf\xc3\xa9", strings.Repeat("a", MaxHeaderSize+1)} {
		if got, err := ParseSessionID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %q, %v", bad, got, err)
		}
	}
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJjIn0.c2ln"
	for _, value := range []string{`"` + jwt + `"`, jwt, `"` + jwt + `";ignored=1`} {
		if got, err := ParseResponse(value); err != nil || got != jwt {
			t.Errorf("%q: %q, %v", value, got, err)
		}
	}
	for _, bad := range []string{``, `""`, `"a", "b"`, `1`, `?1`, `:AQID:`, `"` + strings.Repeat("a", MaxHeaderSize) + `"`} {
		if got, err := ParseResponse(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%.40q: %q, %v", bad, got, err)
		}
	}
}

func TestInstructionsJSON(t *testing.T) {
	stop, _ := json.Marshal(Stop())
	if string(stop) != `{"continue":false}` {
		t.Fatalf("Stop: %s", stop)
	}
	in := Instructions{SessionIdentifier: "s", Scope: Scope{Origin: "https://localhost"}}
	body, _ := json.Marshal(in)
	if string(body) != `{"session_identifier":"s","scope":{"origin":"https://localhost","include_site":false},"credentials":[]}` {
		t.Fatalf("%s", body)
	}
	yes := true
	in = Instructions{SessionIdentifier: "s", RefreshURL: "/dbsc/refresh", Continue: &yes, Credentials: []Credential{{Name: "cr_bound", Attributes: "Path=/; Secure; HttpOnly"}},
		AllowedRefreshInitiators: []string{"localhost"}}
	body, _ = json.Marshal(in)
	var back Instructions
	if err := json.Unmarshal(body, &back); err != nil {
		t.Fatal(err)
	}
	in.Credentials[0].Type = "cookie"
	if !reflect.DeepEqual(back, in) {
		t.Fatalf("%s read back as %+v", body, back)
	}
}
