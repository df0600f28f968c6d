//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package sqlitestore

import "os"

// headerView reads the header with pread where the file cannot be mapped.
type headerView = preadView

func newHeaderView(f *os.File) (headerView, error) { return preadView{f: f}, nil }
