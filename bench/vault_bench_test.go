//go:build unix

package bench

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	cmem "github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
	"github.com/cloakroom/cloakroom/vault"
)

// vaultUpstreamBody is the small JSON answer of both routes.
const vaultUpstreamBody = `{"ok":true,"items":[{"id":1,"title":"a"},{"id":2,"title":"b"}]}`

// vaultRig is one gateway with two routes to one loopback upstream:
// /api/ in vault mode and /plain/ as an ordinary route, and one session
// (captured through the vault's login) valid on both.
type vaultRig struct {
	gateway      http.Handler
	vault, plain *http.Request
}

func newVaultRig(b *testing.B) *vaultRig {
	b.Helper()
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","exp":4102444800}`))
	jwt := "eyJhbGciOiJIUzI1NiJ9." + claims + ".c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/login" {
			io.WriteString(w, `{"token":"`+jwt+`","user":"alice"}`)
			return
		}
		io.WriteString(w, vaultUpstreamBody)
	}))
	b.Cleanup(upstream.Close)
	up, _ := url.Parse(upstream.URL)

	logger := slog.New(slog.DiscardHandler)
	store := cmem.New(cmem.Config{})
	b.Cleanup(func() { store.Close() })
	sessions, err := cloakroom.New(cloakroom.Config{Store: store, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	keys, err := seal.Generate("bench")
	if err != nil {
		b.Fatal(err)
	}
	capture, err := vault.ParseCapture("POST /api/login token")
	if err != nil {
		b.Fatal(err)
	}
	admission, err := signin.New(signin.Config{Sessions: sessions, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	v, err := vault.New(vault.Config{Admission: admission, Sealer: keys, Logger: logger,
		Routes: []vault.Route{{Prefix: "/api/", Capture: []vault.Capture{capture}}}})
	if err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{
		Sessions: sessions, Admission: admission, Accounts: accounts.New(memaccounts.New(), accounts.Config{Throttle: memaccounts.NewThrottle(0), Logger: logger}),
		Routes: []proxy.Route{{Prefix: "/api/", Upstream: up, Mode: v.Modes()["/api/"]}, {Prefix: "/plain/", Upstream: up}},
		Vault:  v, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gw.Close() })
	h := gw.Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/login", strings.NewReader(`{}`)))
	var login struct{ Token string }
	json.Unmarshal(rec.Body.Bytes(), &login)
	cookie := strings.SplitN(rec.Header().Get("Set-Cookie"), ";", 2)[0]
	if rec.Code != 200 || cookie == "" || !strings.HasPrefix(login.Token, "cloakroom-vault.") {
		b.Fatalf("vault login: %d %q %q", rec.Code, cookie, rec.Body)
	}
	r := &vaultRig{gateway: h}
	r.vault = httptest.NewRequest("GET", "/api/items", nil)
	r.vault.Header.Set("Authorization", "Bearer "+login.Token)
	r.plain = httptest.NewRequest("GET", "/plain/items", nil)
	for _, req := range []*http.Request{r.vault, r.plain} {
		req.Header.Set("Cookie", cookie)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Accept-Encoding", "gzip")
	}
	return r
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchProxied serves req through the gateway b.N times, one at a time,
// and reports as ns/op the whole process's CPU time per request (gateway,
// proxy, loopback upstream and its server alike), the figure the vault's
// target is set on; wall-ns/op is the elapsed time.
func benchProxied(b *testing.B, h http.Handler, req *http.Request) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != vaultUpstreamBody {
		b.Fatalf("warm-up request: %d %q", rec.Code, rec.Body)
	}
	w := &discardWriter{h: make(http.Header)}
	b.ReportAllocs()
	b.ResetTimer()
	cpu, start := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		w.reset()
		h.ServeHTTP(w, req)
	}
	cpu, wall := cpuTime()-cpu, time.Since(start)
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(wall.Nanoseconds())/float64(b.N), "wall-ns/op")
}

// BenchmarkProxyVaultRoute is a proxied call on a vault route: the
// vaulted token opened and attached, the small JSON answer read and
// checked for tokens.
func BenchmarkProxyVaultRoute(b *testing.B) {
	r := newVaultRig(b)
	benchProxied(b, r.gateway, r.vault)
}

// BenchmarkProxyPlainRoute is the same call on an ordinary route of the
// same gateway, with the same session.
func BenchmarkProxyPlainRoute(b *testing.B) {
	r := newVaultRig(b)
	benchProxied(b, r.gateway, r.plain)
}

// BenchmarkProxyVaultShare serves the vault route and the ordinary route
// in alternating blocks on one gateway and reports each one's process CPU
// time per request and their ratio, the figure the vault's target is set
// on: the two halves see the same moments of the machine, where the two
// benchmarks above run one after the other. ns/op is the mean of both.
func BenchmarkProxyVaultShare(b *testing.B) {
	r := newVaultRig(b)
	reqs := [2]*http.Request{r.vault, r.plain}
	for _, req := range reqs {
		rec := httptest.NewRecorder()
		r.gateway.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.String() != vaultUpstreamBody {
			b.Fatalf("warm-up request: %d %q", rec.Code, rec.Body)
		}
	}
	const block = 100
	w := &discardWriter{h: make(http.Header)}
	var cpu [2]time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		for k, req := range reqs {
			start := cpuTime()
			for range n {
				w.reset()
				r.gateway.ServeHTTP(w, req)
			}
			cpu[k] += cpuTime() - start
		}
	}
	vault, plain := float64(cpu[0].Nanoseconds())/float64(b.N), float64(cpu[1].Nanoseconds())/float64(b.N)
	b.ReportMetric((vault+plain)/2, "ns/op")
	b.ReportMetric(vault, "vault-ns/req")
	b.ReportMetric(plain, "plain-ns/req")
	b.ReportMetric(vault/plain, "vault/plain")
}
