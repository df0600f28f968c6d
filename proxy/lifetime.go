package proxy

import (
	"context"
	"strings"

	"net/http"
	"sync"
)

// Lifetime bounds the connections a request opens: given the request's
// context, it returns a context that is done when they must close, and a
// function to call once they have. The gateway passes the session's
// Watch, so that a stream or a WebSocket ends with the session. For a
// request with one (Call.Lifetime), a request body and every response
// that outlives a plain exchange (a protocol switch such as a WebSocket,
// an event stream, a body of unknown length or over longBodyBytes) are
// held under it: when its context is done, the upload is cut before the
// upstream has it whole (the client gets 401), the upgraded connection is
// closed, or the stream aborted, at once.
type Lifetime func(ctx context.Context) (context.Context, context.CancelFunc)

// longBodyBytes is the size above which a response with a known length
// counts as long-lived: a download can take minutes.
const longBodyBytes = 1 << 20

// longLived reports whether res stays open beyond a plain exchange.
func longLived(res *http.Response) bool {
	if res.StatusCode == http.StatusSwitchingProtocols || res.ContentLength < 0 || res.ContentLength > longBodyBytes {
		return true
	}
	// Only the media type matters, so the parameters are not parsed (a full
	// mime.ParseMediaType per response showed in the gateway's profile); a
	// malformed parameter list still counts as a stream, the safe side.
	mediaType, _, _ := strings.Cut(res.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "text/event-stream")
}

// hold ties one proxied request to its Lifetime. The upstream request runs
// under a context of its own, cancelled when the lifetime ends: a request
// body still being sent is cut (a request parked on its last byte cannot
// reach the upstream whole after the session ended), for an upgraded
// connection the reverse proxy closes both sides, and a streaming response
// is aborted (the client sees it cut, not completed).
type hold struct {
	lifetime Lifetime
	cancel   context.CancelFunc // ends the upstream request

	mu      sync.Mutex
	ended   context.Context // the lifetime's; nil until held
	release func()          // stops watching; nil until held
}

// start begins holding the request under the lifetime, once.
func (h *hold) start(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended != nil {
		return
	}
	// The lifetime watches the session only: the request's own end (the
	// client gone, the server's read deadline cutting a slow body) must
	// not read as the session's. done releases it.
	ended, stopWatch := h.lifetime(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ended, h.cancel)
	h.ended = ended
	h.release = func() {
		stopAfter()
		stopWatch()
	}
}

// lifetimeEnded reports whether the request was cut because its lifetime
// ended (the session), not because the request itself did.
func (st *callState) lifetimeEnded() bool {
	if !st.held {
		return false
	}
	h := &st.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ended != nil && h.ended.Err() != nil
}

// done ends the hold once the proxied request is over.
func (h *hold) done() {
	h.mu.Lock()
	release := h.release
	h.mu.Unlock()
	if release != nil {
		release()
	}
	h.cancel()
}

// holdResponse holds a long-lived response under its request's Lifetime.
func (st *callState) holdResponse(res *http.Response) {
	if st.held && longLived(res) {
		st.hold.start(res.Request.Context())
	}
}
