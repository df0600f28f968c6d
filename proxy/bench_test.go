package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/upstreamjwt"
)

// discardWriter is a reusable ResponseWriter, so the benchmark measures the
// proxies rather than the recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkProxy compares one request through Proxy with one through a
// plain httputil.ReverseProxy, both over the same transport to a trivial
// upstream on 127.0.0.1.
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	transport := proxy.NewTransport()
	b.Cleanup(transport.CloseIdleConnections)

	plain := &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
	}
	route := proxy.Route{Prefix: "/api/", Upstream: target}
	bare := newProxy(b, proxy.Config{Routes: []proxy.Route{route}, Transport: transport})
	signed := newProxy(b, proxy.Config{Routes: []proxy.Route{route}, Transport: transport, Signer: newSigner(b, upstreamjwt.SignerConfig{})})

	newRequest := func(id *proxy.Identity) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://gateway.test/api/items/42?x=1", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Cookie", "theme=dark; __Host-Http-session=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
		r.Header.Set("Accept", "application/json")
		r.Header.Set("User-Agent", "bench")
		if id != nil {
			r = r.WithContext(context.WithValue(r.Context(), testCallKey{}, proxy.Call{Identity: *id}))
		}
		return r
	}
	alice := &proxy.Identity{User: "alice", Email: "alice@example.test", Groups: []string{"admins", "dev"}}
	cases := []struct {
		name string
		h    http.Handler
		req  *http.Request
	}{
		{"plain-reverseproxy", plain, newRequest(nil)},
		{"proxy-anonymous", served(bare), newRequest(nil)},
		{"proxy-identity-headers", served(bare), newRequest(alice)},
		{"proxy-identity-jwt", served(signed), newRequest(alice)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.status = 0
				c.h.ServeHTTP(w, c.req)
				if w.status != 0 && w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// BenchmarkSignVerify measures the per-request token cost on each side.
func BenchmarkSignVerify(b *testing.B) {
	s := newSigner(b, upstreamjwt.SignerConfig{})
	id := proxy.Identity{User: "alice", Email: "alice@example.test", Groups: []string{"admins", "dev"}}
	now := time.Unix(1_800_000_000, 0)
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Sign(id, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	token, _ := s.Sign(id, now)
	jwks := s.JWKS()
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := upstreamjwt.Verify(token, jwks, "api", now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
