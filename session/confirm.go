package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
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
type confirmer struct {
	sess    *Session
	answers chan *beaconpb.LeaseConfirmed

	mu      sync.Mutex
	pending bool
	seq     uint64
	wake    chan struct{} // capacity 1: a request is pending
	done    chan struct{}
	once    sync.Once
}

func newConfirmer(sess *Session) *confirmer {
	return &confirmer{sess: sess, answers: make(chan *beaconpb.LeaseConfirmed),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// ask records a request; the newest seq is the one answered.
func (c *confirmer) ask(seq uint64) {
	c.mu.Lock()
	c.pending, c.seq = true, seq
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *confirmer) stop() { c.once.Do(func() { close(c.done) }) }

func (c *confirmer) run() {
	var last time.Time
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		if gap := time.Until(last.Add(minConfirmGap)); gap > 0 {
			select {
			case <-c.done:
				return
			case <-time.After(gap):
			}
		}
		c.mu.Lock()
		if !c.pending {
			c.mu.Unlock()
			continue
		}
		seq := c.seq
		c.pending = false
		c.mu.Unlock()

		last = time.Now()
		// A keepalive that takes longer than the TTL proves nothing the
		// client can still use: its deadline has passed by then.
		ctx, cancel := context.WithTimeout(c.sess.Context(), c.sess.TTL)
		lease, ttl, err := c.sess.Confirm(ctx)
		cancel()
		if err != nil {
			// Unconfirmed: the client's deadline runs on. It asks again.
			continue
		}
		ans := &beaconpb.LeaseConfirmed{Seq: seq, LeaseId: fmt.Sprintf("%x", lease), TtlMs: ttl.Milliseconds()}
		select {
		case c.answers <- ans:
		case <-c.done:
			return
		}
	}
}
