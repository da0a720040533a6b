package session

import (
	"context"
	"errors"
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
		// A keepalive can hang for seconds when the member forwards it to a
		// leader that was cut off; a fresh one, once the cluster has a new
		// leader, answers. So each try gets a quarter of the TTL.
		ctx, cancel := context.WithTimeout(c.sess.Context(), max(c.sess.TTL/4, 250*time.Millisecond))
		lease, ttl, err := c.sess.Confirm(ctx)
		cancel()
		if errors.Is(err, ErrClosed) {
			return
		}
		if err != nil {
			// Unconfirmed: the client's deadline runs on. Try again for
			// the questions waiting (a newer one, if it came meanwhile).
			c.mu.Lock()
			if !c.pending {
				c.pending, c.seq = true, seq
			}
			c.mu.Unlock()
			select {
			case c.wake <- struct{}{}:
			default:
			}
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
