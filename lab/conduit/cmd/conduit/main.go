// Command conduit serves the API of the lab's RealWorld-shaped JWT app
// (package lab/conduit) on a loopback address, for putting behind the
// cloakroom gateway's vault. It does not serve the page: write it with
// -write-spa and let the gateway serve it (--static).
//
// Usage:
//
//	conduit [-listen 127.0.0.1:3000] [-secret-file FILE]
//	conduit -write-spa DIR
//
// Flags:
//
//	-listen ADDR        where to listen, a loopback host only (default 127.0.0.1:3000)
//	-secret-file FILE   the HS256 key, at least 32 bytes (a final newline is
//	                    ignored); default a random key per run, so tokens die
//	                    with the process
//	-write-spa DIR      write index.html, app.js and app.css into DIR (created
//	                    if missing) and exit
//
// It prints "conduit API on http://ADDR" once it listens, and stops
// gracefully on SIGINT or SIGTERM. Users and articles live in memory.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloakroom/cloakroom/lab/conduit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the program: 0 when it stopped as asked, 1 on a failure, 2 on a
// usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("conduit", flag.ContinueOnError)
	flags.SetOutput(stderr)
	listen := flags.String("listen", "127.0.0.1:3000", "where to listen, a loopback `address` only")
	secretFile := flags.String("secret-file", "", "read the HS256 key, at least 32 bytes, from `file` (default: a random key per run)")
	writeSPA := flags.String("write-spa", "", "write the SPA's files into `dir`, creating it if missing, and exit")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "conduit: unexpected arguments %q\n", flags.Args())
		return 2
	}
	if *writeSPA != "" {
		if err := conduit.WriteSPA(*writeSPA); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "conduit SPA written to %s\n", *writeSPA)
		return 0
	}
	if err := checkLoopback(*listen); err != nil {
		fmt.Fprintln(stderr, "conduit:", err)
		return 2
	}
	secret, err := readSecret(*secretFile)
	if err != nil {
		fmt.Fprintln(stderr, "conduit:", err)
		return 1
	}
	app, err := conduit.New(conduit.Config{Secret: secret})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "conduit:", err)
		return 1
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		ln.Close()
		fmt.Fprintf(stderr, "conduit: %s is not a loopback address\n", ln.Addr())
		return 2
	}
	srv := &http.Server{
		Handler:           app.API(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "conduit API on http://%s\n", ln.Addr())

	select {
	case err := <-served:
		fmt.Fprintln(stderr, "conduit:", err)
		return 1
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		fmt.Fprintln(stderr, "conduit: shutdown:", err)
		return 1
	}
	return 0
}

// checkLoopback refuses a listen address whose host is not "localhost" or
// a loopback IP.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-listen %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-listen %q: the lab app listens on a loopback host only (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// readSecret reads the key from name, or makes a random one when name is
// empty.
func readSecret(name string) ([]byte, error) {
	if name == "" {
		secret := make([]byte, conduit.MinSecretBytes)
		rand.Read(secret)
		return secret, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(b) < conduit.MinSecretBytes {
		return nil, fmt.Errorf("-secret-file %s: the key must hold at least %d bytes (got %d)", name, conduit.MinSecretBytes, len(b))
	}
	return b, nil
}
