package vault_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cloakroom/cloakroom/vault"
)

// withFrameworkLogins adds the framework-styled logins as captures.
func withFrameworkLogins(r *vault.Route) {
	c, err := vault.ParseCapture("POST /api/fw/login/{style} user.token")
	if err != nil {
		panic(err)
	}
	r.Capture = append(r.Capture, c)
}

// events reads cloakroom_vault_events_total for the route /api/ and kind.
func (st *stack) events(kind string) float64 {
	st.t.Helper()
	ch := make(chan prometheus.Metric, 64)
	st.vault.Collectors()[1].Collect(ch)
	close(ch)
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			st.t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range d.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["route"] == "/api/" && labels["event"] == kind {
			return d.GetCounter().GetValue()
		}
	}
	st.t.Fatalf("no events_total for %q", kind)
	return 0
}

// assertRefused checks that r is the vault's 502 and that the refusal
// was counted and logged with reason.
func (st *stack) assertRefused(what string, r response, before float64, reason string) {
	st.t.Helper()
	if r.status != http.StatusBadGateway || !strings.Contains(r.body, "bad_gateway") {
		st.t.Fatalf("%s: %d %q, want the vault's 502", what, r.status, r.body)
	}
	if got := st.events("refused_response"); got != before+1 {
		st.t.Fatalf("%s: refused_response went from %v to %v", what, before, got)
	}
	if !strings.Contains(st.logs.String(), reason) {
		st.t.Fatalf("%s: no log line with %q", what, reason)
	}
	st.assertNoToken(what, r.body)
}

// in returns st reporting to t, for a subtest.
func (st *stack) in(t *testing.T) *stack {
	c := *st
	c.t = t
	return &c
}

// headerText is every header of r, one per line.
func headerText(h http.Header) string {
	var b strings.Builder
	h.Write(&b)
	return b.String()
}

// decodedAsBrowser undoes every content coding the answer lists, in all
// its Content-Encoding fields, as a browser does.
func decodedAsBrowser(t *testing.T, r response) string {
	t.Helper()
	var codings []string
	for _, v := range r.header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	body := []byte(r.body)
	for i := len(codings) - 1; i >= 0; i-- {
		if codings[i] != "gzip" {
			t.Fatalf("coding %q", codings[i])
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return string(body)
}

// A login answer is captured whatever its label: Go's sniffed text/plain
// (a handler that sets no type) and Express's res.send text/html. A
// capture answer that is not JSON (a page handing the token to the SPA)
// is refused, never passed with the token.
func TestCaptureWhateverTheContentType(t *testing.T) {
	st := newStack(t, stackOptions{route: withFrameworkLogins})
	st.browser().register("ann")
	login := `{"user":{"email":"ann@example.com","password":"pw-ann"}}`
	for _, style := range []string{"go-untyped", "express-send"} {
		t.Run(style, func(t *testing.T) {
			st := st.in(t)
			b := st.browser()
			r := b.do("POST", "/api/fw/login/"+style, "application/json", login)
			b.keep(r)
			if r.status != 200 || b.cookie == "" || !strings.HasPrefix(b.stored, "cloakroom-vault.") {
				t.Fatalf("%d, cookie %t, stored %.20q", r.status, b.cookie != "", b.stored)
			}
			st.assertNoToken("answer", r.body+headerText(r.header))
			if who := b.whoami(); who != "ann" {
				t.Fatalf("after the capture the calls act as %q", who)
			}
		})
	}
	t.Run("not-json", func(t *testing.T) {
		st := st.in(t)
		b := st.browser()
		before := st.events("refused_response")
		r := b.do("POST", "/api/fw/login/html-page", "application/json", login)
		st.assertRefused("a capture answer that is not JSON", r, before, "the answer to a capture request is not JSON")
		if b.cookie != "" {
			t.Fatal("a refused capture started a session")
		}
	})
	st.assertNoToken("audit log", st.logs.String())
}

// The vaulted token echoed on an ordinary call never reaches the browser,
// whatever the label: masked in what the vault can check, the answer
// refused where it cannot.
func TestEchoesUnderAnyLabel(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("bea")
	for _, c := range []struct{ style, keeps string }{
		{"text-plain", "signed in with [removed by cloakroom]"},
		{"untyped", "[removed by cloakroom]"},
		{"text-json", `{"seen":"[removed by cloakroom]"}`},
		{"ndjson", "{\"n\":1,\"seen\":\"[removed by cloakroom]"},
		{"html", `<script>window.t = "[removed by cloakroom]`},
		{"gzip-text", "token [removed by cloakroom]"},
		{"gzip-twice-labelled", `{"seen":"[removed by cloakroom]"}`},
	} {
		t.Run(c.style, func(t *testing.T) {
			st := st.in(t)
			b := b.on(st)
			r := b.do("GET", "/api/fw/echo/"+c.style, "", "")
			body := decodedAsBrowser(t, r)
			if r.status != 200 || !strings.Contains(body, c.keeps) {
				t.Fatalf("%d %q", r.status, body)
			}
			st.assertNoToken("answer", body+headerText(r.header))
		})
	}
	for _, c := range []struct{ style, reason string }{
		{"two-types", "several Content-Type values"},
		{"utf16", "a charset in which a token is not its ASCII bytes"},
		{"bom16", "a body in UTF-16"},
	} {
		t.Run(c.style, func(t *testing.T) {
			st := st.in(t)
			b := b.on(st)
			before := st.events("refused_response")
			st.assertRefused(c.style, b.do("GET", "/api/fw/echo/"+c.style, "", ""), before, c.reason)
		})
	}
	st.assertNoToken("audit log", st.logs.String())
}

// A token in a header is found in its decoded forms: an Express JSON
// cookie (j:%7B%22token%22:%22eyJ…), a redirect and a header with
// "Bearer%20eyJ…". Here each is a fresh token the vault does not know.
func TestEncodedTokensInHeaders(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("cleo")
	noRedirects := *b.srv.Client()
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, c := range []struct{ style, header string }{
		{"express-cookie", "Set-Cookie"},
		{"redirect", "Location"},
		{"x-next", "X-Next"},
	} {
		t.Run(c.style, func(t *testing.T) {
			st := st.in(t)
			b := b.on(st)
			before := st.leaks()
			res, err := noRedirects.Do(b.request("GET", "/api/fw/renew/"+c.style, "", ""))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if v := res.Header.Values(c.header); len(v) != 0 {
				t.Fatalf("%s reached the browser: %q", c.header, v)
			}
			st.assertNoToken("headers", headerText(res.Header))
			if st.leaks() != before+1 {
				t.Fatalf("leaks went from %v to %v", before, st.leaks())
			}
		})
	}
}

// A token new at the capture is known to the header check at once, also
// where it is not JWT-shaped (a header written with spaces, "eyAi…").
func TestNewTokenAtCaptureInACookie(t *testing.T) {
	st := newStack(t, stackOptions{route: withFrameworkLogins})
	st.browser().register("dora")
	b := st.browser()
	r := b.do("POST", "/api/fw/login/spaced-cookie", "application/json", `{"user":{"email":"dora@example.com","password":"pw-dora"}}`)
	b.keep(r)
	if r.status != 200 || b.cookie == "" {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	st.assertNoToken("login answer", r.body+headerText(r.header))
	if who := b.whoami(); who != "dora" {
		t.Fatalf("the calls act as %q", who)
	}
}

// Range and If-Range never reach the backend from a vault route: no
// multipart/byteranges answer with the whole token, no small ranges each
// checked alone; a 206 anyway is refused.
func TestRangesAreNotServed(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("edna")
	t.Run("multipart", func(t *testing.T) {
		st := st.in(t)
		b := b.on(st)
		r := b.do("GET", "/api/fw/export", "", "", "Range", "bytes=0-0,1-100000")
		if r.status != 200 || !strings.Contains(r.body, "token [removed by cloakroom]") {
			t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
		}
		st.assertNoToken("answer", r.body)
	})
	t.Run("small-ranges", func(t *testing.T) {
		st := st.in(t)
		b := b.on(st)
		var pieces strings.Builder
		for off := 0; off < 400; off += 16 {
			r := b.do("GET", "/api/fw/export", "", "", "Range", fmt.Sprintf("bytes=%d-%d", off, off+15), "If-Range", "Tue, 14 Nov 2023 22:13:20 GMT")
			body := r.body
			if r.status == http.StatusOK {
				body = body[min(off, len(body)):min(off+16, len(body))]
			}
			pieces.WriteString(body)
		}
		st.assertNoToken("the pieces put together", pieces.String())
	})
	t.Run("unasked-206", func(t *testing.T) {
		st := st.in(t)
		b := b.on(st)
		before := st.events("refused_response")
		st.assertRefused("an unasked 206", b.do("GET", "/api/fw/partial", "", ""), before, "a partial answer (206)")
	})
}

// 103 Early Hints never reach the browser from a vault route: their Link
// names the token before the answer could be checked.
func TestEarlyHintsAreDropped(t *testing.T) {
	st := newStack(t, stackOptions{})
	b := st.browser()
	b.register("fay")
	var mu sync.Mutex
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		hints = append(hints, fmt.Sprint(code, h))
		return nil
	}}
	req := b.request("GET", "/api/fw/hints", "", "")
	res, err := b.srv.Client().Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if res.StatusCode != 200 || len(hints) != 0 {
		t.Fatalf("final %d; informational answers forwarded: %q", res.StatusCode, hints)
	}
}

// An event stream is checked event by event: the token, split between two
// writes, is masked, and an event reaches the browser before the backend
// writes the next one.
func TestEventStreamFlowsEventByEvent(t *testing.T) {
	st := newStack(t, stackOptions{})
	next := make(chan struct{})
	eventGates.Store(st.backend, next)
	b := st.browser()
	b.register("gail")
	res, err := b.srv.Client().Do(b.request("GET", "/api/fw/events", "", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	rd := bufio.NewReader(res.Body)
	event := func() string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			var ev strings.Builder
			for !strings.HasSuffix(ev.String(), "\n\n") {
				line, err := rd.ReadString('\n')
				ev.WriteString(line)
				if err != nil {
					break
				}
			}
			got <- ev.String()
		}()
		select {
		case ev := <-got:
			return ev
		case <-time.After(20 * time.Second): // a hang guard, not a measure
			t.Fatal("no event in 20s: the stream is held back")
			return ""
		}
	}
	first := event()
	if !strings.HasPrefix(first, "data: one [removed by cloakroom]") {
		t.Fatalf("first event %q", first)
	}
	st.assertNoToken("first event", first)
	close(next) // the backend writes the second event only now
	if second := event(); second != "data: two\n\n" {
		t.Fatalf("second event %q", second)
	}
}
