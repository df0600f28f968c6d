package conduit

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed static
var static embed.FS

// SPA returns the single-page app's files: index.html, app.js and
// app.css. They hold no inline script or style, so the page runs under
// "script-src 'self'; style-src 'self'", and call the API at /api on
// their own origin.
func SPA() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	return sub
}

// WriteSPA writes the files of [SPA] into dir, creating dir if it is
// missing and replacing files of the same names.
func WriteSPA(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("conduit: write SPA: %w", err)
	}
	files := SPA()
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
		return fmt.Errorf("conduit: write SPA: %w", err)
	}
	return nil
}
