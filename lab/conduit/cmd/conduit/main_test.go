package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:3000", ":3000", "192.0.2.1:3000", "[::]:3000", "example.com:3000", "127.0.0.1"} {
		var stderr bytes.Buffer
		if code := run(context.Background(), []string{"-listen", addr}, io.Discard, &stderr); code != 2 {
			t.Errorf("-listen %s: exit %d, want 2 (%s)", addr, code, stderr.String())
		}
	}
	for _, addr := range []string{"127.0.0.1:3000", "[::1]:3000", "localhost:3000", "127.0.0.2:0"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("checkLoopback(%s): %v", addr, err)
		}
	}
}

func TestWriteSPAFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dist")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-write-spa", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}

func TestBadFlags(t *testing.T) {
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, []byte(strings.Repeat("k", 31)+"\n"), 0o600)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"-nope"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"-secret-file", short, "-listen", "127.0.0.1:0"}, 1},
		{[]string{"-secret-file", filepath.Join(t.TempDir(), "missing"), "-listen", "127.0.0.1:0"}, 1},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), c.args, io.Discard, &stderr); code != c.code {
			t.Errorf("%q: exit %d, want %d (%s)", c.args, code, c.code, stderr.String())
		}
	}
}

func TestServesAPIAndStops(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(strings.Repeat("k", 32)+"\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-secret-file", secret}, w, io.Discard) }()

	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "conduit API on http://127.0.0.1:")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	url := "http://127.0.0.1:" + base
	res, err := http.Get(url + "/api/articles")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /api/articles: %d", res.StatusCode)
	}
	res, err = http.Get(url + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /index.html: %d, want 404 (the program serves the API only)", res.StatusCode)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after the signal, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
}
