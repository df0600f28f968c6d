// Package syncbuf is a bytes.Buffer safe for concurrent use, for tests that
// collect the log output of concurrent handlers or a command's output.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes from several goroutines. The zero value is empty
// and ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
