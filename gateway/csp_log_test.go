package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// A violation report names the page and the blocked resource by URL; their
// query and fragment may carry a token (a reset link, an OAuth answer in a
// fragment), so only the part before them reaches the log.
func TestCSPReportLogsNoURLQuery(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()
	const secret = "s3cr3t-t0ken-value"
	reports := map[string]string{
		"application/csp-report": `{"csp-report":{"document-uri":"https://app.test/reset?token=` + secret +
			`","effective-directive":"script-src-elem","blocked-uri":"https://cdn.test/x.js?key=` + secret +
			`","source-file":"https://app.test/app.js#` + secret + `"}}`,
		"application/reports+json": `[{"type":"csp-violation","body":{"documentURL":"https://app.test/cb#access_token=` + secret +
			`","effectiveDirective":"script-src-elem","blockedURL":"https://cdn.test/y.js?k=` + secret +
			`","sourceFile":"https://app.test/app.js?v=` + secret + `"}}]`,
	}
	for contentType, body := range reports {
		if s := anon.do(http.MethodPost, "/auth/csp-report", contentType, body).Status; s != http.StatusNoContent {
			t.Fatalf("%s report: %d", contentType, s)
		}
	}
	logs := e.logs.String()
	if strings.Contains(logs, secret) {
		t.Error("a URL's query or fragment from a CSP report reached the log")
	}
	for _, want := range []string{"https://app.test/reset", "https://cdn.test/x.js", "https://app.test/cb", "https://cdn.test/y.js"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
}
