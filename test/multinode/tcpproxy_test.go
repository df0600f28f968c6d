package multinode

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards TCP connections from a loopback port to a store, so a
// test can hold requests mid-flight, cut every connection at once, or make
// the store look stopped (connection refused) and started again on the
// same port.
type tcpProxy struct {
	target string
	addr   string // the proxy's own address; kept across down and up

	mu      sync.Mutex
	ln      net.Listener // nil while down
	pairs   map[*connPair]struct{}
	held    chan struct{} // not nil while client-to-store traffic is held; closed to release it
	heldLog []byte        // every chunk that was held, so a test can tell which requests were caught
	closed  bool
	running sync.WaitGroup // accept loops and copy goroutines
}

// connPair is one forwarded connection: the client's and the store's side.
type connPair struct {
	client, server net.Conn
	done           chan struct{} // closed when the pair is closed
	once           sync.Once
}

// close closes both sides; with reset, the peers get a TCP reset instead of
// an orderly end, as when a link or a middlebox drops the connection.
func (c *connPair) close(reset bool) {
	c.once.Do(func() {
		if reset {
			for _, conn := range []net.Conn{c.client, c.server} {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
			}
		}
		c.client.Close()
		c.server.Close()
		close(c.done)
	})
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{target: target, addr: ln.Addr().String(), pairs: make(map[*connPair]struct{})}
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.ln = ln
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.forward(c)
		}
	}()
}

func (p *tcpProxy) forward(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		client.Close()
		return
	}
	pair := &connPair{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.ln == nil {
		p.mu.Unlock()
		pair.close(false)
		return
	}
	p.pairs[pair] = struct{}{}
	p.mu.Unlock()
	p.running.Add(2)
	go p.pipe(pair, server, client, true)
	go p.pipe(pair, client, server, false)
}

// pipe copies src to dst until either side ends, which ends both, as with a
// real connection. Client-to-store traffic waits while it is held.
func (p *tcpProxy) pipe(pair *connPair, dst, src net.Conn, holdable bool) {
	defer p.running.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if holdable && !p.waitReleased(pair, buf[:n]) {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	delete(p.pairs, pair)
	p.mu.Unlock()
	pair.close(false)
}

// waitReleased waits while traffic is held, logging the held chunk; false
// means the pair was closed meanwhile.
func (p *tcpProxy) waitReleased(pair *connPair, chunk []byte) bool {
	p.mu.Lock()
	held := p.held
	if held != nil {
		p.heldLog = append(p.heldLog, chunk...)
	}
	p.mu.Unlock()
	if held == nil {
		return true
	}
	select {
	case <-held:
		return true
	case <-pair.done:
		return false
	}
}

// hold stops forwarding what clients send: their requests to the store
// stay in flight, unanswered, until release or a cut.
func (p *tcpProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// heldContaining reports which of needles appear in the traffic held since
// the proxy started; a needle is found in any of its spellings.
func (p *tcpProxy) heldContaining(needles [][][]byte) []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	found := make([]bool, len(needles))
	for i, spellings := range needles {
		for _, s := range spellings {
			if bytes.Contains(p.heldLog, s) {
				found[i] = true
			}
		}
	}
	return found
}

// release forwards held traffic again.
func (p *tcpProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// cutAll resets every open connection and returns how many there were.
// New connections are still accepted.
func (p *tcpProxy) cutAll() int {
	p.mu.Lock()
	pairs := make([]*connPair, 0, len(p.pairs))
	for pair := range p.pairs {
		pairs = append(pairs, pair)
	}
	clear(p.pairs)
	p.mu.Unlock()
	for _, pair := range pairs {
		pair.close(true)
	}
	return len(pairs)
}

// down stops listening and cuts every connection: clients see a stopped
// server (connection refused).
func (p *tcpProxy) down() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.cutAll()
}

// up listens again on the same address.
func (p *tcpProxy) up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("proxy closed")
	}
	if p.ln != nil {
		return nil
	}
	// The port was the proxy's a moment ago; on loopback in a test nothing
	// else takes it in between.
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.serve(ln)
	return nil
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.release()
	p.down()
	p.running.Wait()
}

func netDialer(timeout time.Duration) net.Dialer {
	return net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
}

func splitHostPort(t *testing.T, addr string) (string, uint16) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return host, uint16(n)
}
