package guestbook

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

//go:embed static
var staticFiles embed.FS

// ConfigFile is the static file that tells the page its mode.
const ConfigFile = "config.json"

// Static returns the page's files: index.html, app.js and app.css. They
// contain no inline script or style.
func Static() fs.FS {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	return sub
}

// PageConfig is the content of config.json.
type PageConfig struct {
	Mode Mode `json:"mode"`
	// CSP tells the page that a Content-Security-Policy is on, so it can
	// say so; the policy itself is a header set by whoever serves the page.
	CSP bool `json:"csp"`
}

func configJSON(cfg PageConfig) []byte {
	b, _ := json.Marshal(cfg)
	return b
}

// WriteStatic writes the page's files and its config.json into dir, which
// must exist, for a server that serves a folder (the gateway).
func WriteStatic(dir string, cfg PageConfig) error {
	if cfg.Mode != ModeJWT && cfg.Mode != ModeCloakroom {
		return fmt.Errorf("%w: unknown mode %q", ErrInvalidConfig, cfg.Mode)
	}
	files := Static()
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("guestbook: write static files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), configJSON(cfg), 0o644); err != nil {
		return fmt.Errorf("guestbook: write %s: %w", ConfigFile, err)
	}
	return nil
}

// Handler serves the page and the API on one origin, as the ModeJWT app
// runs: /api/ goes to [App.API], /config.json names the mode, and any
// other path without a file extension gets index.html.
func (a *App) Handler() http.Handler {
	api := a.API()
	files := http.FileServerFS(Static())
	cfg := configJSON(PageConfig{Mode: a.cfg.Mode})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
			api.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/auth" || strings.HasPrefix(r.URL.Path, "/auth/") {
			// The gateway's endpoints do not exist here; the page would be
			// a confusing answer to a script asking for them.
			writeError(w, http.StatusNotFound, "no such endpoint: this app has no gateway")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		switch {
		case name == ConfigFile:
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.Write(cfg)
		case name == "" || name == "index.html":
			serveIndex(w, r)
		case fileExists(name):
			files.ServeHTTP(w, r)
		case path.Ext(name) == "":
			serveIndex(w, r) // a client-side route
		default:
			http.NotFound(w, r)
		}
	})
}

func fileExists(name string) bool {
	_, err := fs.Stat(Static(), name)
	return err == nil
}

func serveIndex(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(Static(), "index.html")
	if err != nil {
		http.Error(w, "index.html missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
