//go:build linux || darwin || freebsd || netbsd || openbsd

package sqlitestore

import (
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// headerView maps the first page of the -shm file read-only, as SQLite
// itself maps it, so reading the header costs a few loads instead of a
// system call. SQLite never shrinks the file below 3 bytes while it is
// open, so the first page stays addressable.
type headerView struct {
	mem []byte
}

func newHeaderView(f *os.File) (headerView, error) {
	mem, err := syscall.Mmap(int(f.Fd()), 0, os.Getpagesize(), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return headerView{}, err
	}
	return headerView{mem: mem}, nil
}

func (v headerView) read() (walHeader, error) {
	var hdr walHeader
	// SQLite writes the header from other threads and processes: each
	// aligned word is loaded atomically. A read that overlaps a write
	// may mix old and new words, which differs from any value seen
	// before, so it counts as a change.
	words := (*[walHeaderSize / 4]uint32)(unsafe.Pointer(&v.mem[0]))
	for i := range hdr {
		hdr[i] = atomic.LoadUint32(&words[i])
	}
	return hdr, nil
}

func (v headerView) close() error { return syscall.Munmap(v.mem) }
