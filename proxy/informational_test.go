package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/cloakroom/cloakroom/proxy"
)

// hintingUpstream answers every request with a 103 Early Hints whose Link
// names a secret, then a 200.
func hintingUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.js?t=secret-in-a-hint>; rel=preload; as=script")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "final")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// informationalSeen sends a GET and returns the 1xx statuses and Link
// values the client saw, and the final status and body.
func informationalSeen(t *testing.T, url string) (hints []string, status int, body string) {
	t.Helper()
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		hints = append(hints, http.StatusText(code)+" "+strings.Join(h.Values("Link"), ","))
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	mu.Lock()
	defer mu.Unlock()
	return hints, res.StatusCode, string(raw)
}

// dropHints is an Exchange that refuses every informational answer and
// counts what it was asked about.
type dropHints struct {
	mu    sync.Mutex
	asked []string
}

func (*dropHints) Rewrite(*http.Request)               {}
func (*dropHints) ModifyResponse(*http.Response) error { return nil }
func (d *dropHints) Informational(code int, h http.Header) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked = append(d.asked, http.StatusText(code)+" "+h.Get("Link"))
	return false
}

// plainExchange is an Exchange without a filter.
type plainExchange struct{}

func (plainExchange) Rewrite(*http.Request)               {}
func (plainExchange) ModifyResponse(*http.Response) error { return nil }

// An Exchange that implements InformationalFilter sees the upstream's 103
// Early Hints, header included, before the client does, and a refused one
// never reaches the client; without a filter it is forwarded as before.
func TestInformationalAnswersFiltered(t *testing.T) {
	up := hintingUpstream(t)
	route, err := proxy.ParseRoute("/api/=" + up.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, proxy.Config{Routes: []proxy.Route{route}})
	filter := &dropHints{}
	gw := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var x proxy.Exchange = plainExchange{}
		if r.URL.Query().Has("filter") {
			x = filter
		}
		p.Serve(w, r, proxy.Call{Exchange: x})
	}))

	hints, status, body := informationalSeen(t, gw.URL+"/api/page")
	if len(hints) != 1 || !strings.Contains(hints[0], "secret-in-a-hint") || status != 200 || body != "final" {
		t.Fatalf("without a filter: hints %q, final %d %q", hints, status, body)
	}
	hints, status, body = informationalSeen(t, gw.URL+"/api/page?filter")
	if len(hints) != 0 || status != 200 || body != "final" {
		t.Fatalf("with a filter that refuses: hints %q, final %d %q", hints, status, body)
	}
	filter.mu.Lock()
	defer filter.mu.Unlock()
	if len(filter.asked) != 1 || !strings.Contains(filter.asked[0], "Early Hints </app.js?t=secret-in-a-hint>") {
		t.Fatalf("the filter was asked %q", filter.asked)
	}
}
