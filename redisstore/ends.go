package redisstore

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/redis/rueidis"
)

var _ cloakroom.EndNotifier = (*Store)(nil)

// endsChannel is the pub/sub channel on which the scripts announce the
// sessions they end, in the same atomic step as the change. In a Redis
// Cluster a PUBLISH reaches the subscribers of every node.
func (s *Store) endsChannel() string { return s.prefix + "ends" }

// End messages: "k" and the 32 bytes of a deleted session's key, or "g",
// the new generation, ":" and the user ID after a bump.
func endKeyMessage(key cloakroom.Key) string { return "k" + string(key[:]) }

func parseEnd(msg string) (cloakroom.End, bool) {
	switch {
	case len(msg) == 1+len(cloakroom.Key{}) && msg[0] == 'k':
		var e cloakroom.End
		copy(e.Key[:], msg[1:])
		return e, true
	case len(msg) > 1 && msg[0] == 'g':
		gen, user, ok := strings.Cut(msg[1:], ":")
		g, err := strconv.ParseUint(gen, 10, 64)
		if ok && err == nil {
			return cloakroom.End{UserID: user, Generation: g}, true
		}
	}
	return cloakroom.End{}, false
}

// Resubscribing after a broken connection waits between these bounds.
const (
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 2 * time.Second
)

// WatchEnds implements [cloakroom.EndNotifier] through Redis pub/sub. After
// the subscription broke and is back, fn gets End{All: true}: ends
// announced meanwhile were missed. It returns nil when ctx is done.
func (s *Store) WatchEnds(ctx context.Context, fn func(cloakroom.End)) error {
	var subscribed atomic.Bool // set from rueidis' connection goroutine
	hooked := rueidis.WithOnSubscriptionHook(ctx, func(sub rueidis.PubSubSubscription) {
		if sub.Kind != "subscribe" {
			return
		}
		if subscribed.Swap(true) {
			fn(cloakroom.End{All: true})
		}
	})
	wait := resubscribeMin
	for {
		err := s.client.Receive(hooked, s.client.B().Subscribe().Channel(s.endsChannel()).Build(), func(m rueidis.PubSubMessage) {
			if e, ok := parseEnd(m.Message); ok {
				fn(e)
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			wait = resubscribeMin // unsubscribed by someone else: subscribe again at once
		}
		if subscribed.Load() {
			// Whatever was published until the next subscription is lost;
			// say so now too, in case that takes long.
			fn(cloakroom.End{All: true})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, resubscribeMax)
	}
}
