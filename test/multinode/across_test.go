package multinode

import (
	"fmt"
	"sync"
	"time"
)

// acrossRevocation runs pollers that check a session back to back while a
// revocation is made, and keeps the checks that started once the
// revocation's call had returned: where a store promises that a
// revocation holds on every node when it returns, none of them may accept.
type acrossRevocation struct {
	// limit ends a poller still accepting this long after the return.
	limit time.Duration

	mu       sync.Mutex
	sent     time.Time // zero until the revocation was started
	returned time.Time // zero until the call returned

	pollers []*poller
	done    sync.WaitGroup
	first   sync.WaitGroup // every poller's first check
}

// poller is one session checked on one node.
type poller struct {
	name string
	// firstAccepted is whether the first check accepted the session.
	firstAccepted bool
	// during counts the checks that started while the revocation's call
	// ran (see markSent).
	during int
	// after are the checks that started after the return, in order.
	after []afterCheck
	err   error
}

// afterCheck is one check that started after the revocation returned.
type afterCheck struct {
	at       time.Duration // its start, counted from the return
	accepted bool
}

func newAcrossRevocation(limit time.Duration) *acrossRevocation {
	return &acrossRevocation{limit: limit}
}

// start runs check in a goroutine of its own, back to back, until, once
// the revocation returned, check refuses the session or limit has passed
// since the return; an error ends it too. Call it from the test's
// goroutine only, before wait; the poller it returns is read after wait.
func (ar *acrossRevocation) start(name string, check func() (accepted bool, err error)) *poller {
	p := &poller{name: name}
	ar.pollers = append(ar.pollers, p)
	ar.done.Add(1)
	ar.first.Add(1)
	go func() {
		defer ar.done.Done()
		for n := 0; ; n++ {
			sent, since := ar.marks()
			began := time.Now()
			accepted, err := check()
			if n == 0 {
				p.firstAccepted = accepted && err == nil
				ar.first.Done()
			}
			if err != nil {
				p.err = err
				return
			}
			switch {
			case since.IsZero():
				// Before the revocation returned: anything goes, at a
				// gentler pace.
				if !sent.IsZero() && began.After(sent) {
					p.during++
				}
				time.Sleep(50 * time.Microsecond)
				continue
			case !began.After(since):
				continue
			}
			p.after = append(p.after, afterCheck{at: began.Sub(since), accepted: accepted})
			if !accepted || began.Sub(since) > ar.limit {
				return
			}
		}
	}()
	return p
}

// started waits until every poller made its first check, and returns an
// error naming those that did not accept the session then: a revocation
// made afterwards ends sessions that every node was serving.
func (ar *acrossRevocation) started() error {
	ar.first.Wait()
	var refused []string
	for _, p := range ar.pollers {
		if !p.firstAccepted {
			refused = append(refused, p.name)
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("not accepted before the revocation: %v", refused)
	}
	return nil
}

// markSent records that the revocation's call is being made, from now;
// optional, for counting the checks made while it runs.
func (ar *acrossRevocation) markSent() {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	ar.sent = time.Now()
}

// markReturned records that the revocation's call returned, now.
func (ar *acrossRevocation) markReturned() {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	ar.returned = time.Now()
}

func (ar *acrossRevocation) marks() (sent, returned time.Time) {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return ar.sent, ar.returned
}

// wait waits for every poller to end (markReturned must have been
// called) and returns them.
func (ar *acrossRevocation) wait() []*poller {
	ar.done.Wait()
	return ar.pollers
}

// acceptedAfter counts the checks that started after the return and still
// accepted the session, and returns the latest one's start.
func (p *poller) acceptedAfter() (n int, latest time.Duration) {
	for _, c := range p.after {
		if c.accepted {
			n++
			latest = max(latest, c.at)
		}
	}
	return n, latest
}

// stillAccepting reports whether the poller ended on an accepted check:
// limit after the return, the session was still served.
func (p *poller) stillAccepting() (bool, time.Duration) {
	if len(p.after) == 0 {
		return false, 0
	}
	last := p.after[len(p.after)-1]
	return last.accepted, last.at
}
