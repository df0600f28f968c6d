package proxy

import (
	"context"
	"net/http"
)

// Exchange lets the caller of [Proxy.ServeHTTP] adjust one proxied
// exchange, after the proxy's own rules have run. The gateway's token vault
// uses it to attach a vaulted upstream token and to inspect the response.
type Exchange struct {
	// Rewrite, when set, is called with the outbound request after the
	// proxy has removed client-sent identity headers and set its own.
	Rewrite func(out *http.Request)
	// ModifyResponse, when set, is called after the proxy's own response
	// filtering (the session cookie). An error answers 502 Bad Gateway and
	// is logged without the URL's query or any header.
	ModifyResponse func(*http.Response) error
}

type exchangeKey struct{}

// WithExchange returns a context that makes ServeHTTP apply x to the
// request it carries.
func WithExchange(ctx context.Context, x *Exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, x)
}

func exchangeFrom(ctx context.Context) *Exchange {
	x, _ := ctx.Value(exchangeKey{}).(*Exchange)
	return x
}
