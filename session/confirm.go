package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// minConfirmGap spaces one session's keepalives: a client asking for
// confirmations in a tight loop gets them no faster than this, so it
// cannot turn its session into a stream of etcd writes.
const minConfirmGap = 20 * time.Millisecond

// confirmer answers one session's ConfirmLease requests. It keeps at most
// one keepalive in flight; requests that arrive meanwhile are answered
// together by the next keepalive, which leaves after they arrived, as the
// guarantee requires (an answer from a keepalive sent before a request
// arrived would prove nothing about the time of asking).
//
// It has no goroutine of its own: the session's stream handler runs it
// from its loop (wake, gap, results), and a keepalive in flight runs on a
// goroutine that lives only as long as the keepalive. An idle session,
// the usual case, costs no goroutine here.
type confirmer struct {
	sess *Session

	mu      sync.Mutex
	pending bool
	seq     uint64
	wake    chan struct{} // capacity 1: a request is pending

	// Owned by the handler's goroutine.
	inFlight bool
	last     time.Time
	results  chan confirmation // capacity 1: the keepalive in flight's
	gapTimer *time.Timer
	gap      <-chan time.Time // set while waiting out minConfirmGap
}

// confirmation is a keepalive's outcome, for the request seq.
type confirmation struct {
	seq   uint64
	lease clientv3.LeaseID
	ttl   time.Duration
	err   error
}

func newConfirmer(sess *Session) *confirmer {
	return &confirmer{sess: sess, wake: make(chan struct{}, 1), results: make(chan confirmation, 1)}
}

// ask records a request; the newest seq is the one answered. It is
// called from the stream's receiving goroutine.
func (c *confirmer) ask(seq uint64) {
	c.mu.Lock()
	c.pending, c.seq = true, seq
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// poke starts a keepalive if a request is pending, none is in flight and
// the last left at least minConfirmGap ago (else it arms the gap timer).
func (c *confirmer) poke() {
	if c.inFlight || c.gap != nil {
		return
	}
	c.mu.Lock()
	if !c.pending {
		c.mu.Unlock()
		return
	}
	if wait := time.Until(c.last.Add(minConfirmGap)); wait > 0 {
		c.mu.Unlock()
		if c.gapTimer == nil {
			c.gapTimer = time.NewTimer(wait)
		} else {
			c.gapTimer.Reset(wait)
		}
		c.gap = c.gapTimer.C
		return
	}
	seq := c.seq
	c.pending = false
	c.mu.Unlock()

	c.inFlight, c.last = true, time.Now()
	go func() {
		// A keepalive can hang for seconds when the member forwards it to
		// a leader that was cut off; a fresh one, once the cluster has a
		// new leader, answers. So each try gets a quarter of the TTL.
		ctx, cancel := context.WithTimeout(c.sess.Context(), max(c.sess.TTL/4, 250*time.Millisecond))
		defer cancel()
		lease, ttl, err := c.sess.Confirm(ctx)
		c.results <- confirmation{seq: seq, lease: lease, ttl: ttl, err: err}
	}()
}

// gapPassed is the gap timer's firing.
func (c *confirmer) gapPassed() {
	c.gap = nil
	c.poke()
}

// finish takes a keepalive's outcome: the answer to send, or nil when
// there is none (the session closed, or the keepalive failed and is tried
// again for the requests waiting).
func (c *confirmer) finish(r confirmation) *beaconpb.LeaseConfirmed {
	c.inFlight = false
	switch {
	case errors.Is(r.err, ErrClosed):
		return nil
	case r.err != nil:
		// Unconfirmed: the client's deadline runs on. Try again for the
		// questions waiting (a newer one, if it came meanwhile).
		c.mu.Lock()
		if !c.pending {
			c.pending, c.seq = true, r.seq
		}
		c.mu.Unlock()
		c.poke()
		return nil
	}
	return &beaconpb.LeaseConfirmed{Seq: r.seq, LeaseId: fmt.Sprintf("%x", r.lease), Ttl: durationpb.New(r.ttl)}
}

// stop releases the gap timer.
func (c *confirmer) stop() {
	if c.gapTimer != nil {
		c.gapTimer.Stop()
	}
}
