package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/cloakroom/cloakroom/internal/httpjson"
	"github.com/cloakroom/cloakroom/internal/httpx"
	"github.com/cloakroom/cloakroom/proxy"
)

// staticSPA serves a folder holding a single-page app.
type staticSPA struct {
	root *os.Root // confines every open to the folder, symlinks included
	fsys fs.FS
}

func newStaticSPA(dir string) (*staticSPA, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("Static: %w", err)
	}
	return &staticSPA{root: root, fsys: root.FS()}, nil
}

// ServeHTTP serves the file named by the path. A path that names no file
// and has no extension is a client-side route and gets index.html; one with
// an extension is a missing asset and gets 404. Directories are never
// listed and dotfiles (.env, .git) are never served.
func (s *staticSPA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "Only GET and HEAD are served here.")
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	if hasDotSegment(name) || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	if s.serveFile(w, r, name) {
		return
	}
	if path.Ext(name) != "" {
		http.NotFound(w, r)
		return
	}
	if !s.serveFile(w, r, "index.html") {
		http.NotFound(w, r)
	}
}

// serveFile serves name if it is a regular file, and reports whether it did.
func (s *staticSPA) serveFile(w http.ResponseWriter, r *http.Request, name string) bool {
	f, err := s.fsys.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return false
	}
	content, ok := f.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(f)
		if err != nil {
			return false
		}
		content = bytes.NewReader(b)
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if name == "index.html" {
		// The shell names the current asset bundles: always revalidate.
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, info.Name(), info.ModTime(), content)
	return true
}

func (s *staticSPA) Close() error { return s.root.Close() }

func hasDotSegment(name string) bool {
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, ".") {
			return true
		}
	}
	return false
}

// stripIdentity removes client-sent identity and forwarding headers and
// the gateway's own cookies from h.
func stripIdentity(h http.Header, cookies []string) {
	proxy.StripIdentityHeaders(h)
	for _, c := range cookies {
		httpx.RemoveCookie(h, c)
	}
}

// newFrontendProxy forwards SPA requests to an upstream dev server or CDN
// origin, without the session cookie or any client-sent identity.
func newFrontendProxy(target *url.URL, cookies []string, log *slog.Logger) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			stripIdentity(pr.Out.Header, cookies)
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			// The upstream may not set or clear the gateway's cookies.
			var kept []string
			for _, line := range resp.Header["Set-Cookie"] {
				// Compared leniently: a line Go cannot parse may still
				// be one a browser accepts.
				name, _, _ := strings.Cut(line, "=")
				if slices.ContainsFunc(cookies, func(c string) bool { return strings.EqualFold(strings.TrimSpace(name), c) }) {
					continue
				}
				kept = append(kept, line)
			}
			if len(kept) == 0 {
				resp.Header.Del("Set-Cookie")
			} else {
				resp.Header["Set-Cookie"] = kept
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				log.ErrorContext(r.Context(), "frontend upstream failed", "path", r.URL.Path, "err", err)
			}
			http.Error(w, "Bad Gateway: the frontend cannot be reached.", http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	}
}
