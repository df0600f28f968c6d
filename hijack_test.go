package cloakroom_test

import (
	"bufio"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/internal/syncbuf"
	"github.com/cloakroom/cloakroom/memstore"
)

// A handler that takes the connection over (a WebSocket, say) through
// http.ResponseController gets the session saved first: the session's
// headers are in the writer's header map, which httputil.ReverseProxy
// sends with its 101, and nothing is written through the middleware after
// the hijack (net/http would log it and drop it).
func TestHijackSavesTheSessionFirst(t *testing.T) {
	store := memstore.New(memstore.Config{})
	defer store.Close()
	m := quietManager(t, store)
	done := make(chan struct{})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		m.Session(r).Put("seen", "yes") // an anonymous session: it needs a cookie
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		res := &http.Response{StatusCode: http.StatusSwitchingProtocols, ProtoMajor: 1, ProtoMinor: 1, Header: w.Header()}
		res.Write(brw)
		brw.Flush()
	}))
	srv := httptest.NewUnstartedServer(h)
	logs := &syncbuf.Buffer{}
	srv.Config.ErrorLog = log.New(logs, "", 0)
	srv.Start()
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	srv.Close() // flushes the server's log of this connection
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	cookie := res.Header.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, cloakroom.DefaultCookieName+"=") {
		t.Errorf("101 without the session's cookie (Set-Cookie %q): the session was saved after the hijack, or not at all", cookie)
	}
	if got := logs.String(); strings.Contains(got, "hijacked") {
		t.Errorf("the middleware wrote to the hijacked connection: %s", got)
	}
}

// When the session cannot be saved, the connection is not handed over:
// the request is answered 503 instead, as any other response would be.
func TestHijackRefusedWhenTheSaveFails(t *testing.T) {
	mem := memstore.New(memstore.Config{})
	defer mem.Close()
	store := &countingStore{Store: mem}
	store.fail.Store(true)
	m := quietManager(t, store)
	var hijackErr error
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Session(r).Put("seen", "yes")
		var conn net.Conn
		if conn, _, hijackErr = http.NewResponseController(w).Hijack(); conn != nil {
			conn.Close()
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !errors.Is(hijackErr, cloakroom.ErrStoreUnavailable) {
		t.Errorf("hijack with an unsaved session: %v, want ErrStoreUnavailable", hijackErr)
	}
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", res.StatusCode)
	}
}
