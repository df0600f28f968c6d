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
