package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/memstore"
)

// cspFixture is the report endpoint on a clock that moves only when told.
type cspFixture struct {
	t    *testing.T
	c    *cspReports
	logs *bytes.Buffer
	now  time.Time
}

func newCSPFixture(t *testing.T) *cspFixture {
	f := &cspFixture{t: t, logs: &bytes.Buffer{}, now: time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)}
	store := memstore.New(memstore.Config{})
	t.Cleanup(func() { store.Close() })
	m, err := cloakroom.New(cloakroom.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	f.c = newCSPReports(m, slog.New(slog.NewJSONHandler(f.logs, nil)), func() time.Time { return f.now })
	return f
}

const legacyCSPReport = `{"csp-report":{"document-uri":"https://app.test/","effective-directive":"script-src-elem","blocked-uri":"inline"}}`

// post sends one report from the client address ip; the session
// manager's reading of the address (here the connection's) is the one used.
func (f *cspFixture) post(ip, body string) int {
	req := httptest.NewRequest(http.MethodPost, "/auth/csp-report", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/csp-report")
	req.RemoteAddr = fmt.Sprintf("[%s]:40000", ip)
	rec := httptest.NewRecorder()
	f.c.ServeHTTP(rec, req)
	return rec.Code
}

// logged counts the violation lines logged for the client address ip.
func (f *cspFixture) logged(ip string) int {
	return strings.Count(f.logs.String(), `"client_ip":"`+ip+`"`)
}

// One client flooding the endpoint uses up its own budget only: another
// client's report, sent in the same instant, is still answered 204 and
// logged.
func TestCSPReportFloodDoesNotSilenceOthers(t *testing.T) {
	f := newCSPFixture(t)
	const flooder, victim = "198.51.100.7", "203.0.113.9"
	limited := 0
	for range 200 {
		if f.post(flooder, legacyCSPReport) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("200 reports at once from one address were never rate-limited")
	}
	if n := f.logged(flooder); n > cspClientBurst {
		t.Errorf("the flooder got %d lines logged at once, more than its burst of %d", n, cspClientBurst)
	}
	if s := f.post(victim, legacyCSPReport); s != http.StatusNoContent {
		t.Fatalf("another client's report: status %d, want 204", s)
	}
	if f.logged(victim) != 1 {
		t.Errorf("another client's report was not logged")
	}
	// A second later the flooder has its refill, and no more.
	f.now = f.now.Add(time.Second)
	ok := 0
	for range 10 {
		if f.post(flooder, legacyCSPReport) == http.StatusNoContent {
			ok++
		}
	}
	if ok != cspClientPerSec {
		t.Errorf("after one second the flooder got %d reports in, want %d", ok, cspClientPerSec)
	}
}

// A report of many violations pays for each line it logs.
func TestCSPReportBatchPaysPerViolation(t *testing.T) {
	f := newCSPFixture(t)
	var b strings.Builder
	b.WriteString("[")
	for i := range 32 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"type":"csp-violation","body":{"documentURL":"https://app.test/","effectiveDirective":"img-src","blockedURL":"https://x.test/"}}`)
	}
	b.WriteString("]")
	const ip = "198.51.100.8"
	if s := f.post(ip, b.String()); s != http.StatusNoContent {
		t.Fatalf("batch: %d", s)
	}
	if s := f.post(ip, b.String()); s != http.StatusTooManyRequests {
		t.Errorf("a second batch of 32 right after the first: %d, want 429", s)
	}
}

// Many addresses neither grow the table past its size nor get more lines
// logged, all together, than the gateway-wide ceiling.
func TestCSPReportLimitsAreBounded(t *testing.T) {
	f := newCSPFixture(t)
	logged := 0
	for i := range 3 * cspClientTable {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
		if f.post(ip, legacyCSPReport) == http.StatusNoContent {
			logged++
		}
	}
	if n := f.c.perClient.Len(); n > cspClientTable {
		t.Errorf("%d client addresses remembered, more than the table's %d", n, cspClientTable)
	}
	if logged > cspAllBurst {
		t.Errorf("%d reports logged at once from many addresses, over the ceiling of %d", logged, cspAllBurst)
	}
	// The ceiling refills with time.
	f.now = f.now.Add(time.Second)
	if s := f.post("192.0.2.1", legacyCSPReport); s != http.StatusNoContent {
		t.Errorf("a new client after the ceiling refilled: %d", s)
	}
}
