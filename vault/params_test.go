package vault_test

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// lastRequest is the URL and the body of the last request, as the backend
// received them.
func (b *jwtBackend) lastRequest() (url, body string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastURL, b.lastBody
}

// tokenNameVariants are spellings of access_token, as sent in a query or
// an urlencoded form, that PHP ($_GET, $_POST), Rails (Rack's parser) or
// Express (qs) read as access_token, or as access_token holding an array
// or a hash.
var tokenNameVariants = []string{
	"access_token", "ACCESS_TOKEN", "access%5Ftoken", "+access_token", "%20access_token",
	// PHP turns '.' and ' ' into '_', and a '[' without a closing ']' too.
	"access.token", "access+token", "access%20token", "access%2Etoken", "Access.Token",
	"access[token", "access%5Btoken", "%20access.token",
	// PHP, Rack and qs take the name before the first '[' as the name.
	"access_token[]", "access_token%5B%5D", "access_token[0]", "access_token[a]", "access_token[][x]",
	"access.token[]", "access_token%5b%5d",
	// Rack 2 and qs drop leading brackets.
	"[access_token]", "%5Baccess_token%5D", "[access_token][x]", "]access_token",
	// qs with allowDots reads a.b as a[b].
	"access_token.x",
	// PHP ends a name at a NUL.
	"access_token%00x",
	// PHP keeps a malformed escape and decodes the rest.
	"access%5Ftoken[%zz]",
}

// tokenJSONKeys are JSON member names a backend reads the token from
// (Rails takes JSON bodies as parameters, at any depth through its params
// wrapping), as they appear in the JSON text.
var tokenJSONKeys = []string{
	`access_token`, `ACCESS_TOKEN`, `acc\u0065ss_token`, `access.token`, `access token`, `access[token`,
	`access_token[]`, `[access_token]`, `access_token\u0000x`,
}

// TestTokenParameterVariantsNeverReachTheBackend: a token stolen from
// elsewhere and sent under any spelling of access_token, in the query, an
// urlencoded form, a JSON body or a multipart form, does not reach the
// backend; everything else does, byte for byte.
func TestTokenParameterVariantsNeverReachTheBackend(t *testing.T) {
	st := newStack(t, stackOptions{})
	st.browser().register("erin")
	stolen := st.backend.issued()[0]
	attacker := st.browser()
	reached := func(how string, r response) {
		t.Helper()
		u, body := st.backend.lastRequest()
		if r.status == http.StatusBadRequest || strings.Contains(u, stolen) || strings.Contains(body, stolen) {
			t.Errorf("%s: %d, backend saw %q %q", how, r.status, u, body)
		}
	}
	for _, name := range tokenNameVariants {
		r := attacker.do("GET", "/api/articles?tag=go&"+name+"="+stolen, "", "")
		reached("query "+name, r)
		if u, _ := st.backend.lastRequest(); u != "/api/articles?tag=go" {
			t.Errorf("query %s: the other parameters changed: %q", name, u)
		}
		r = attacker.do("POST", "/api/form", "application/x-www-form-urlencoded", "title=x&"+name+"="+stolen)
		reached("form "+name, r)
		if _, body := st.backend.lastRequest(); body != "title=x" {
			t.Errorf("form %s: the other fields changed: %q", name, body)
		}
		decoded, err := url.QueryUnescape(name)
		if err != nil {
			continue // a multipart name is not percent-decoded
		}
		body, contentType := multipartBody(t, "title", "x", decoded, stolen)
		reached("multipart "+name, attacker.do("POST", "/api/form", contentType, body))
	}
	for _, key := range tokenJSONKeys {
		for _, body := range []string{
			`{"title":"x","` + key + `":"` + stolen + `"}`,
			`{"user":{"bio":"x","` + key + `":"` + stolen + `"}}`,
			`[{"` + key + `":"` + stolen + `"},{"` + key + `":["` + stolen + `"]}]`,
			`{"a":[{"b":{"` + key + `":{"nested":"` + stolen + `"}}}],"c":1}`,
		} {
			reached("JSON "+body, attacker.do("POST", "/api/raw", "application/json", body))
			reached("JSON+json "+body, attacker.do("PATCH", "/api/raw", "application/merge-patch+json", body))
		}
	}
	// Rack reads a POST body without a Content-Type as a form.
	reached("untyped form", attacker.do("POST", "/api/form", "", "title=x&access.token="+stolen))
}

// multipartBody is a multipart form with the given fields, in order.
func multipartBody(t *testing.T, fields ...string) (body, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := mw.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String(), mw.FormDataContentType()
}

// TestBodiesWithoutTokenParametersPassUnchanged: JSON, multipart and form
// bodies that name no token parameter reach the backend byte for byte.
func TestBodiesWithoutTokenParametersPassUnchanged(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("fay")
	var upload bytes.Buffer
	mw := multipart.NewWriter(&upload)
	mw.WriteField("title", "access_token is a word")
	fw, _ := mw.CreateFormFile("file", "access_token.txt")
	fw.Write([]byte("access_token=eyJ\r\n--not-the-boundary\r\n\x00\xff"))
	mw.Close()
	for _, c := range []struct{ contentType, body string }{
		{"application/json", " {\"user\" : {\"bio\":\"access_token\", \"n\":[1, 2.5e3, null, true]} }\n"},
		{"application/json; charset=utf-8", `"access_token"`},
		{"application/json", ""},
		{"application/vnd.api+json", `[{"my_access_token":1,"access_tokens":2,"token":3}]`},
		{mw.FormDataContentType(), upload.String()},
		{"application/x-www-form-urlencoded", "a=1&b=access_token&c=%zz&my_access_token=1"},
		{"text/plain", "access_token=x&{not json"},
	} {
		r := b.do("POST", "/api/raw", c.contentType, c.body)
		if _, got := st.backend.lastRequest(); r.status != 200 || got != c.body {
			t.Errorf("%s %q: %d, backend got %q", c.contentType, c.body, r.status, got)
		}
	}
}

// TestUncheckableRequestBodiesAreRefused: a body the vault cannot check
// for token parameters does not reach the backend.
func TestUncheckableRequestBodiesAreRefused(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	big := `{"a":"` + strings.Repeat("x", 1<<20) + `"}`
	for i, c := range []struct {
		contentType, body string
		extra             []string
		status            int
	}{
		{"application/json", `{"a":`, nil, http.StatusBadRequest},
		{"application/json", `{"a":1} {"access_token":"x"}`, nil, http.StatusBadRequest},
		{"application/json", strings.Repeat("[", 600) + strings.Repeat("]", 600), nil, http.StatusBadRequest},
		{"application/json", big, nil, http.StatusRequestEntityTooLarge},
		{"application/json", `{"a":1}`, []string{"Content-Encoding", "gzip"}, http.StatusUnsupportedMediaType},
		{"multipart/form-data", "--x\r\n\r\n--x--", nil, http.StatusBadRequest},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\n--x\r\n--x--\r\n", nil, http.StatusBadRequest},
		{"multipart/form-data; boundary=x; x-boundary=y", "--x--\r\n", nil, http.StatusBadRequest},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name*=utf-8''access_token\r\n\r\n1\r\n--x--\r\n", nil, http.StatusBadRequest},
	} {
		before, _ := st.backend.lastRequest()
		r := b.do("POST", "/api/raw?case="+fmt.Sprint(i), c.contentType, c.body, c.extra...)
		if after, _ := st.backend.lastRequest(); r.status != c.status || after != before {
			t.Errorf("%s %.40q: %d (want %d), backend reached: %v", c.contentType, c.body, r.status, c.status, after != before)
		}
	}
}
