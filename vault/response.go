package vault

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// The vault decides how to check an answer on what the browser can read
// of it, not on its labels: a body it reads whole (JSON by its type or by
// its first byte, and every answer to a capture request) or one it checks
// as it streams (everything else), each in its decoded form. Whatever it
// cannot decode or check is refused with 502.

// hasBody reports whether the client reads a body of res.
func hasBody(res *http.Response, method string) bool {
	return method != http.MethodHead && res.StatusCode >= 200 &&
		res.StatusCode != http.StatusNoContent && res.StatusCode != http.StatusNotModified
}

// maxCodings bounds the content codings undone on one body: each may
// multiply its size.
const maxCodings = 2

// codings are a body's content codings in the order they were applied,
// identity left out.
type codings struct {
	names [maxCodings]string
	n     int
}

// uncheckable returns why the body of res cannot be checked as it is
// labelled, "" if it can, and its content codings.
func uncheckable(res *http.Response) (codings, string) {
	var cs codings
	if res.StatusCode == http.StatusPartialContent {
		// Range is never sent upstream from a vault route; pieces of a
		// body, each checked alone, could make up a token.
		return cs, "a partial answer (206)"
	}
	if ct := res.Header["Content-Type"]; len(ct) > 0 {
		for _, v := range ct[1:] {
			if !strings.EqualFold(strings.TrimSpace(v), strings.TrimSpace(ct[0])) {
				return cs, "several Content-Type values"
			}
		}
		if strings.IndexByte(ct[0], ',') >= 0 {
			return cs, "a list in Content-Type"
		}
		if strings.EqualFold(mediaType(ct[0]), "multipart/byteranges") {
			return cs, "a multipart/byteranges body"
		}
		if !checkableCharsets(ct[0]) {
			return cs, "a charset in which a token is not its ASCII bytes"
		}
	}
	for _, v := range res.Header["Content-Encoding"] {
		for c := range strings.SplitSeq(v, ",") {
			c = strings.TrimSpace(c)
			var name string
			switch {
			case c == "" || strings.EqualFold(c, "identity"):
				continue
			case strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip"):
				name = "gzip"
			case strings.EqualFold(c, "deflate"):
				name = "deflate"
			default:
				return cs, "a content coding the vault cannot decode"
			}
			if cs.n == maxCodings {
				return cs, "more content codings than the vault undoes"
			}
			cs.names[cs.n] = name
			cs.n++
		}
	}
	return cs, ""
}

// checkableCharsets reports whether every charset parameter of a
// Content-Type value names an encoding in which ASCII text, a token, is
// its own bytes: UTF-8, ASCII and the common ASCII-compatible ones. In
// UTF-16 (say) a token's bytes are interleaved with zeros, and a browser
// reads it all the same.
func checkableCharsets(ct string) bool {
	_, params, ok := strings.Cut(ct, ";")
	for ok {
		var p string
		p, params, ok = strings.Cut(params, ";")
		name, value, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(name), "charset") {
			continue
		}
		value = strings.ToLower(strings.Trim(strings.TrimSpace(value), `"`))
		switch value {
		case "utf-8", "utf8", "us-ascii", "ascii", "latin1", "shift_jis", "sjis", "euc-jp", "euc-kr",
			"gbk", "gb2312", "gb18030", "big5", "koi8-r", "koi8-u":
			continue
		}
		if !strings.HasPrefix(value, "iso-8859-") && !strings.HasPrefix(value, "windows-125") {
			return false
		}
	}
	return true
}

// decodedBody is a body with its content codings undone; closing it
// closes the upstream body.
type decodedBody struct {
	io.Reader
	io.Closer
}

// undo returns body with cs undone, last applied first. Each decoder reads
// its header here: a body that does not start as labelled fails now.
func undo(body io.ReadCloser, cs codings) (io.ReadCloser, error) {
	if cs.n == 0 {
		return body, nil
	}
	var r io.Reader = body
	for i := cs.n - 1; i >= 0; i-- {
		var err error
		if cs.names[i] == "gzip" {
			r, err = gzip.NewReader(r)
		} else {
			r, err = zlib.NewReader(r)
		}
		if err != nil {
			return nil, fmt.Errorf("undoing %s: %w", cs.names[i], err)
		}
	}
	return decodedBody{Reader: r, Closer: body}, nil
}

// isStreamType reports whether a media type is a stream of events or
// records, checked as it flows and never read whole.
func isStreamType(mt string) bool {
	for _, t := range [...]string{"text/event-stream", "application/x-ndjson", "application/jsonl", "application/json-seq"} {
		if strings.EqualFold(mt, t) {
			return true
		}
	}
	return false
}

// isJSONType reports whether a media type says JSON: application/json,
// text/json, a +json type.
func isJSONType(mt string) bool {
	for i := 0; i+4 <= len(mt); i++ {
		if strings.EqualFold(mt[i:i+4], "json") {
			return true
		}
	}
	return false
}

// sniffLimit bounds what is read to see how a body starts.
const sniffLimit = 512

var (
	bomUTF8    = []byte{0xEF, 0xBB, 0xBF}
	bomUTF16BE = []byte{0xFE, 0xFF}
	bomUTF16LE = []byte{0xFF, 0xFE}
)

// startsUTF16 reports whether b starts with a UTF-16 byte-order mark,
// which a browser obeys whatever the label says.
func startsUTF16(b []byte) bool {
	return bytes.HasPrefix(b, bomUTF16BE) || bytes.HasPrefix(b, bomUTF16LE)
}

// bodyStart returns the first byte of b that is not white space, after a
// UTF-8 byte-order mark; ok is false when b cannot tell yet.
func bodyStart(b []byte) (first byte, ok bool) {
	if len(b) < 2 && (len(b) == 0 || b[0] == 0xFE || b[0] == 0xFF) {
		return 0, false
	}
	if len(b) < len(bomUTF8) && bytes.HasPrefix(bomUTF8, b) {
		return 0, false
	}
	b = bytes.TrimPrefix(b, bomUTF8)
	for _, c := range b {
		if !isSpace(c) {
			return c, true
		}
	}
	return 0, false
}

// peek reads the start of r, until bodyStart can tell, sniffLimit bytes
// or the end.
func peek(r io.Reader) ([]byte, error) {
	buf := make([]byte, 0, sniffLimit)
	for len(buf) < sniffLimit {
		n, err := r.Read(buf[len(buf):sniffLimit])
		buf = buf[:len(buf)+n]
		if _, ok := bodyStart(buf); ok || err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

var (
	errTooLarge = errors.New("body larger than the vault's limit")
	errUTF16    = errors.New("a body in UTF-16")
)

// readsWhole reports whether the body of res, src once decoded, is read
// whole: the answer to a capture request whatever its labels, and anything
// labelled or starting as JSON, but a stream of events or records. It
// returns what it read of src to tell.
func readsWhole(res *http.Response, src io.Reader, capture bool) (bool, []byte, error) {
	mt := mediaType(res.Header.Get("Content-Type"))
	if capture || isJSONType(mt) && !isStreamType(mt) {
		return true, nil, nil
	}
	if strings.EqualFold(mt, "text/event-stream") {
		return false, nil, nil // an event may be long in coming
	}
	prefix, err := peek(src)
	if err != nil {
		return false, nil, fmt.Errorf("reading: %w", err)
	}
	if startsUTF16(prefix) {
		return false, nil, errUTF16
	}
	first, _ := bodyStart(prefix)
	return (first == '{' || first == '[') && !isStreamType(mt), prefix, nil
}

// readBody reads the whole body of res: prefix, already read, then src
// (res.Body, or it decoded when decoded), at most limit bytes before and
// after decoding. It closes res.Body.
func readBody(res *http.Response, prefix []byte, src io.Reader, decoded bool, limit int64) ([]byte, error) {
	defer res.Body.Close()
	if res.ContentLength > limit {
		return nil, errTooLarge
	}
	var body []byte
	if !decoded && res.ContentLength >= int64(len(prefix)) {
		body = make([]byte, res.ContentLength)
		n := copy(body, prefix)
		if _, err := io.ReadFull(src, body[n:]); err != nil {
			return nil, fmt.Errorf("reading: %w", err)
		}
		return body, nil
	}
	rest, err := io.ReadAll(io.LimitReader(src, limit+1-int64(len(prefix))))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	body = append(prefix, rest...)
	if int64(len(body)) > limit {
		return nil, errTooLarge
	}
	return body, nil
}

// refuse answers 502 in place of res and says why in the log and in
// cloakroom_vault_events_total; the upstream body is never sent.
func (x *exchange) refuse(ctx context.Context, res *http.Response, reason string) {
	res.Body.Close()
	x.v.event(ctx, x.rt, eventRefusedResponse, "vault: response refused", slog.String("path", x.r.URL.Path),
		slog.Int("status", res.StatusCode), slog.String("reason", reason))
	replaceResponse(res, http.StatusBadGateway, "bad_gateway", "The upstream answer could not be checked for tokens.")
}

// streamBody has the body of res, src (decoded when decoded; prefix
// already read from it), checked as the client reads it: the vaulted token
// and JWT-shaped strings are masked, trailers checked at its end.
func (x *exchange) streamBody(ctx context.Context, res *http.Response, prefix []byte, src io.Reader, decoded bool) {
	known := []string{x.token}
	x.guardHeaders(ctx, res.Header, known)
	var literals [][]byte
	if len(x.tokenBytes) > 0 {
		literals = [][]byte{x.tokenBytes}
	}
	g := newStreamGuard(prefix, src, res.Body, literals)
	g.atEOF = func() { x.guardHeaders(ctx, res.Trailer, known) }
	g.closed = func(n int) {
		if n > 0 {
			x.v.leaks.WithLabelValues(x.rt.label).Add(float64(n))
			x.v.log.LogAttrs(ctx, slog.LevelWarn, "vault: token masked in a streamed response body",
				slog.String("route", x.rt.label), slog.String("path", x.r.URL.Path), slog.Int("count", n))
		}
	}
	if decoded {
		// The length is the client's to learn.
		res.Header.Del("Content-Encoding")
		res.Header.Del("Content-Length")
		res.ContentLength = -1
	}
	res.Body = g
}

// Informational drops every 1xx informational answer of a vault route
// ([proxy.InformationalFilter]): its header would reach the client before
// the answer is checked, and a browser does without one (103 Early Hints
// only speeds up loading).
func (x *exchange) Informational(code int, _ http.Header) bool {
	x.v.log.LogAttrs(x.r.Context(), slog.LevelDebug, "vault: informational answer dropped",
		slog.String("route", x.rt.label), slog.String("path", x.r.URL.Path), slog.Int("status", code))
	return false
}
