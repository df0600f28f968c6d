package endfanout

import (
	"testing"

	"github.com/cloakroom/cloakroom"
)

func TestPublishReachesSubscribersUntilCancel(t *testing.T) {
	f := New()
	var a, b []cloakroom.End
	cancelA, ok := f.Subscribe(func(e cloakroom.End) { a = append(a, e) })
	if !ok {
		t.Fatal("Subscribe on an open Fanout refused")
	}
	cancelB, _ := f.Subscribe(func(e cloakroom.End) { b = append(b, e) })
	f.Publish(cloakroom.End{UserID: "alice", Generation: 1})
	cancelA()
	cancelA() // a second cancel does nothing
	f.Publish(cloakroom.End{All: true})
	cancelB()
	f.Publish(cloakroom.End{UserID: "bob", Generation: 1})
	// Each subscriber first hears All, sent as it subscribed.
	if len(a) != 2 || !a[0].All || a[1].UserID != "alice" {
		t.Errorf("first subscriber got %+v, want All, then only alice's end", a)
	}
	if len(b) != 3 || !b[0].All || b[1].UserID != "alice" || !b[2].All {
		t.Errorf("second subscriber got %+v, want All, alice's end, then All", b)
	}
}

// TestCloseWaitsForSubscribers: Close returns only once every subscription
// has been cancelled, and no new one is taken meanwhile or after.
func TestCloseWaitsForSubscribers(t *testing.T) {
	f := New()
	cancel, _ := f.Subscribe(func(cloakroom.End) {})
	returned := make(chan struct{})
	watcher := make(chan struct{})
	go func() {
		<-f.Closing()
		// Closing is closed before Close waits: a new subscription
		// is refused from then on.
		if _, ok := f.Subscribe(func(cloakroom.End) {}); ok {
			t.Error("Subscribe during Close succeeded")
		}
		close(watcher)
	}()
	go func() { f.Close(); close(returned) }()
	<-watcher
	select {
	case <-returned:
		t.Fatal("Close returned with a subscription still active")
	default:
	}
	cancel()
	<-returned
	f.Close()
	if _, ok := f.Subscribe(func(cloakroom.End) {}); ok {
		t.Fatal("Subscribe after Close succeeded")
	}
}
