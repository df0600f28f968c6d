package proxy

import "net/http"

// Exchange lets the caller of [Proxy.Serve] adjust one proxied exchange,
// after the proxy's own rules have run. The gateway's token vault uses it
// to attach a vaulted upstream token and to inspect the response. (An
// interface rather than a struct of funcs, so that the caller's
// per-request state implements it without a closure per hook.)
type Exchange interface {
	// Rewrite is called with the outbound request after the proxy has
	// removed client-sent identity headers and set its own.
	Rewrite(out *http.Request)
	// ModifyResponse is called after the proxy's own response filtering
	// (the session cookie). An error answers 502 Bad Gateway and is logged
	// without the URL's query or any header.
	ModifyResponse(*http.Response) error
}

// InformationalFilter is implemented by an [Exchange] that decides which
// of the upstream's 1xx informational answers (100 Continue, 103 Early
// Hints) reach the client. The reverse proxy forwards those as they come,
// before the final answer and so before ModifyResponse; without a filter
// every one is forwarded. 101 Switching Protocols is a final answer, not
// an informational one: ModifyResponse sees it.
type InformationalFilter interface {
	// Informational reports whether the informational answer with this
	// status and header may be forwarded to the client.
	Informational(code int, header http.Header) bool
}

// informationalWriter hands every 1xx the reverse proxy writes to its
// filter first. It does not implement http.Flusher or http.Hijacker
// itself: http.ResponseController reaches them through Unwrap.
type informationalWriter struct {
	http.ResponseWriter
	filter InformationalFilter
}

func (w *informationalWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols && !w.filter.Informational(code, w.Header()) {
		// The reverse proxy clears the header map after a 1xx itself,
		// so what it copied there goes with the dropped answer.
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *informationalWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
