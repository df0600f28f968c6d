package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/lab"
)

// demoLab is what the demo hands to registerLab: the running gateway's
// pieces and a way to start more loopback servers that stop with the demo.
type demoLab struct {
	ctx        context.Context
	dataDir    string
	gatewayURL *url.URL // http://localhost:PORT
	appURL     *url.URL // the notes API upstream, on loopback
	accounts   *accounts.Service
	sessions   *cloakroom.Manager
	stdout     io.Writer
	logger     *slog.Logger

	listeners    []listener
	instructions []string // lines printed with the demo's URLs
	stops        []func() // run after the servers have stopped, last first
}

// serve starts h on a free loopback port, for the lifetime of the demo,
// and returns its URL.
func (l *demoLab) serve(name string, h http.Handler) (*url.URL, error) {
	socket, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	l.listeners = append(l.listeners, listener{name: name, server: demoServer(h, l.logger), socket: socket})
	return &url.URL{Scheme: "http", Host: socket.Addr().String()}, nil
}

// say adds a line to what the demo prints at start.
func (l *demoLab) say(format string, args ...any) {
	l.instructions = append(l.instructions, fmt.Sprintf(format, args...))
}

func (l *demoLab) printInstructions(w io.Writer) {
	for _, line := range l.instructions {
		fmt.Fprintln(w, line)
	}
	if len(l.instructions) > 0 {
		fmt.Fprintln(w)
	}
}

// atStop registers fn to run when the demo stops, after its servers.
func (l *demoLab) atStop(fn func()) { l.stops = append(l.stops, fn) }

func (l *demoLab) stop() {
	for i := len(l.stops) - 1; i >= 0; i-- {
		l.stops[i]()
	}
}

// registerLab runs once the demo's gateway is listening, before it serves:
// it starts the XSS lab (package lab) beside the demo, on loopback only, and
// adds its instructions to what the demo prints. The lab's apps are
// deliberately vulnerable and say so on every page. (A variable so that
// tests can exercise the hook.)
var registerLab = func(l *demoLab) error {
	running, err := lab.Start(l.ctx, lab.Options{Logger: l.logger})
	if err != nil {
		return fmt.Errorf("start the lab: %w", err)
	}
	l.atStop(func() { running.Close() })
	for _, line := range strings.Split(strings.TrimRight(running.Instructions(), "\n"), "\n") {
		l.say("%s", line)
	}
	return nil
}
