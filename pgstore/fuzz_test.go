package pgstore

import (
	"strings"
	"testing"

	"github.com/cloakroom/cloakroom"
)

// FuzzNotificationPayload feeds the listener arbitrary payloads, as a
// newer version or a stray NOTIFY on the channel could send. The listener
// must not panic; a payload it reads as a session end must be one the
// store writes (it encodes back to the same meaning); one it does not know
// must empty the cache, the safe reading, and so must a bump of the global
// epoch; and no payload may make the cache serve without the node's own
// heartbeat.
func FuzzNotificationPayload(f *testing.F) {
	var key cloakroom.Key
	key[0], key[31] = 0xab, 0x01
	for _, seed := range []string{
		key.String(), prefixDeleted + key.String(), bumpPayload("alice", 3), bumpPayload("a:b", 1),
		prefixUser + "alice", flushPayload, "h:0011223344556677:12345", "r:0011223344556677:9",
		epochPayload(1), epochPayload(1 << 62), "e:", "e:0", "e:-1", "e:+2", "e:x",
		"a:0011223344556677:8899aabbccddeeff:1,8899aabbccddeeff:2", "x:0011223344556677",
		"", "d:", "g::", "g:1:", "g:x:alice", "h:", "a:", "r::", strings.Repeat("z", 70),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		ev, written, ok := parseEnd(payload)
		switch {
		case !ok:
		case written != nil:
			if !strings.EqualFold(payload, written.String()) {
				t.Fatalf("%q read as a write of %s", payload, written)
			}
		case ev.hasKey:
			if !strings.EqualFold(payload, prefixDeleted+ev.key.String()) {
				t.Fatalf("%q read as the end of %s", payload, ev.key)
			}
		case ev.all && ev.user == "":
			if payload != flushPayload {
				t.Fatalf("%q read as a flush", payload)
			}
		case ev.all:
			if payload != prefixUser+ev.user {
				t.Fatalf("%q read as an old-style bump of %q", payload, ev.user)
			}
		case ev.epoch != 0:
			again, _, ok := parseEnd(epochPayload(int64(ev.epoch)))
			if ev.user != "" || int64(ev.epoch) > 0 && (!ok || again != ev) {
				t.Fatalf("%q read as a bump of the epoch to %d, which does not encode back", payload, ev.epoch)
			}
		default:
			again, _, ok := parseEnd(bumpPayload(ev.user, int64(ev.generation)))
			if len(bumpPayload(ev.user, int64(ev.generation))) <= maxNotifyPayload && int64(ev.generation) >= 0 && (!ok || again != ev) {
				t.Fatalf("%q read as a bump of %q to %d, which does not encode back", payload, ev.user, ev.generation)
			}
		}

		c := newCache(10)
		h := newHub(&Store{channel: "test"}, c, DefaultCacheLease)
		rec := cloakroom.Record{Key: key, UserID: "bob"}
		c.setEnabled(true)
		c.fill(c.reserve(key), rec)
		var published []endEvent
		h.subs[&subscriber{fn: func(e endEvent) { published = append(published, e) }}] = struct{}{}
		h.handle(payload)
		if c.trusted() {
			t.Fatalf("%q made the cache serve without a heartbeat of its own", payload)
		}
		protocol := false
		for _, p := range []string{prefixHeartbeat, prefixMarker, prefixAck, prefixLeave} {
			protocol = protocol || strings.HasPrefix(payload, p)
		}
		_, still := c.entries[key]
		switch {
		case protocol && (!still || len(published) > 0):
			t.Fatalf("node message %q touched the cache (kept: %v) or published %v", payload, still, published)
		case !protocol && !ok && still:
			t.Fatalf("unknown payload %q left the cache as it was", payload)
		case !protocol && !ok && (len(published) != 1 || !published[0].all):
			t.Fatalf("unknown payload %q published %v, want End{All}", payload, published)
		case ok && ev.epoch != 0 && (still || len(published) != 1 || published[0].epoch != ev.epoch):
			t.Fatalf("epoch bump %q left the cache as it was (%v) or published %v", payload, still, published)
		}
	})
}
