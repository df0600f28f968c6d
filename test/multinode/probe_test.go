package multinode

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgNotifyChannel is the channel pgstore sends invalidations on for schema.
// It mirrors pgstore's unexported notifyChannel; should that change, the
// probe hears nothing and the report says so, and no assertion depends on
// it.
func pgNotifyChannel(schema string) string {
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("cloakroom_%016x", h.Sum64())
}

// notifyProbe listens to a NOTIFY channel on a connection of its own and
// notes when each payload arrived. It times delivery by PostgreSQL
// the way a pgstore listener on the same machine receives it.
type notifyProbe struct {
	mu      sync.Mutex
	arrived map[string][]time.Time
}

func startNotifyProbe(t *testing.T, cfg *pgx.ConnConfig, channel string) *notifyProbe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		cancel()
		conn.Close(context.Background())
		t.Fatal(err)
	}
	p := &notifyProbe{arrived: make(map[string][]time.Time)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			p.mu.Lock()
			p.arrived[n.Payload] = append(p.arrived[n.Payload], now)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close(context.Background())
	})
	return p
}

// arrival returns when payload was first heard after since.
func (p *notifyProbe) arrival(payload string, since time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, at := range p.arrived[payload] {
		if !at.Before(since) {
			return at, true
		}
	}
	return time.Time{}, false
}
