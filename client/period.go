package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/beaconhq/beacon/internal/holdclock"
)

// ErrLeaseEnded is the cause of a lease period's end: the lease expired or
// was revoked, the agent said it stopped, or its deadline passed on this
// process's clock without a fresh confirmation.
var ErrLeaseEnded = errors.New("lease ended")

// Margin is what a holder takes off a confirmed lease's TTL for the rate
// difference of its clock and the etcd leader's: 1% of the TTL, plus 10 ms
// for the scheduling of timers. Clocks of one machine agree exactly;
// quartz oscillators of two differ by less than 0.01%.
func Margin(ttl time.Duration) time.Duration { return ttl/100 + 10*time.Millisecond }

// LeasePeriod is one lease of a session: from its grant until it ends. A
// session that loses its lease (it expired in a partition) goes on under a
// new one, in a new period; what was held in the old period is lost.
//
// A period's deadline is a lower bound of its lease's expiry on this
// process's own clock: the time this process asked for a confirmation,
// plus the TTL etcd set on the keepalive that answered it, less Margin.
// The keepalive left the agent after the question did, so on any etcd
// leader the lease lives at least that long. When the deadline passes
// without a fresher confirmation, the period ends, whatever the agent says
// or fails to say.
type LeasePeriod struct {
	// ID is the etcd lease id, in hex.
	ID string

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	deadline time.Duration // on holdclock; 0 until first confirmed
	armed    chan struct{} // closed at the first confirmation
	lapsed   func(*LeasePeriod)
}

// newPeriod starts a period of lease id. lapsed, if set, is called when
// the period ends because its deadline passed: the lease may well live on
// (the agent or its cluster was only slow), and the session goes on with a
// new period of the same lease once a confirmation comes; what was held in
// the lapsed period stays lost.
func newPeriod(id string, lapsed func(*LeasePeriod)) *LeasePeriod {
	ctx, cancel := context.WithCancelCause(context.Background())
	p := &LeasePeriod{ID: id, ctx: ctx, cancel: cancel, armed: make(chan struct{}), lapsed: lapsed}
	go p.watch()
	return p
}

// Context ends when the lease does; context.Cause tells why (wrapping
// ErrLeaseEnded).
func (p *LeasePeriod) Context() context.Context { return p.ctx }

// Done is closed when the period has ended.
func (p *LeasePeriod) Done() <-chan struct{} { return p.ctx.Done() }

// Err is nil while the period lasts, then why it ended.
func (p *LeasePeriod) Err() error {
	if p.ctx.Err() == nil {
		return nil
	}
	return context.Cause(p.ctx)
}

// Remaining is the time left before the deadline on this process's clock;
// zero or less once it has passed. It stops moving when the period ends.
func (p *LeasePeriod) Remaining() time.Duration {
	p.mu.Lock()
	d := p.deadline
	p.mu.Unlock()
	if d == 0 {
		return 0
	}
	return d - holdclock.Now()
}

// Deadline is the deadline as a wall-clock time, for display: the clock
// that counts is the process's own (Remaining).
func (p *LeasePeriod) Deadline() time.Time { return time.Now().Add(p.Remaining()) }

// confirm moves the deadline to asked+ttl-Margin, if that is later. An
// answer whose deadline has already passed (it took longer than the TTL to
// come) proves nothing for now and is ignored.
func (p *LeasePeriod) confirm(asked, ttl time.Duration) {
	if p.ctx.Err() != nil {
		return
	}
	d := asked + ttl - Margin(ttl)
	now := holdclock.Now()
	if d <= now {
		return
	}
	p.mu.Lock()
	if p.deadline != 0 && p.deadline <= now {
		// The deadline passed unconfirmed (this process was paused, say):
		// the period is over, whatever a late answer says; the watch ends
		// it, and the session goes on in a new one.
		p.mu.Unlock()
		return
	}
	first := p.deadline == 0
	if d > p.deadline {
		p.deadline = d
	}
	p.mu.Unlock()
	if first {
		close(p.armed)
	}
}

// end ends the period, once, saying why. The deadline stays: the lease
// may live until then (the agent died, or stopped), and whoever acts
// under it may use the time to stop.
func (p *LeasePeriod) end(why string) {
	p.cancel(fmt.Errorf("%w: lease %s: %s", ErrLeaseEnded, p.ID, why))
}

// gone ends the period because etcd no longer has its lease: it was
// revoked (an expiry cannot come before the deadline), so the deadline is
// now, and whatever was held under it may be someone else's already.
func (p *LeasePeriod) gone(why string) {
	p.mu.Lock()
	if now := holdclock.Now(); p.deadline > now {
		p.deadline = now
	}
	p.mu.Unlock()
	p.end(why)
}

// watch ends the period when its deadline passes unconfirmed.
func (p *LeasePeriod) watch() {
	select {
	case <-p.armed:
	case <-p.ctx.Done():
		return
	}
	for {
		p.mu.Lock()
		d := p.deadline
		p.mu.Unlock()
		if !holdclock.SleepUntil(p.ctx, d) {
			return
		}
		p.mu.Lock()
		extended := p.deadline > d
		p.mu.Unlock()
		if !extended {
			p.end("not confirmed before its deadline on this process's clock (the agent or its cluster did not answer in time)")
			if p.lapsed != nil {
				p.lapsed(p)
			}
			return
		}
	}
}

// waitArmed waits for the period's first confirmation.
func (p *LeasePeriod) waitArmed(ctx context.Context) error {
	select {
	case <-p.armed:
		return nil
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}
