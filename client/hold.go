package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/beaconhq/beacon/internal/holdclock"
)

// ErrLost is why a hold ended without Release: its lease ended (expired,
// revoked, or unconfirmed past its deadline on this process's clock), the
// agent reported it gone, or the agent is stopping.
var ErrLost = errors.New("hold lost")

// Hold is something an application holds in a session, bound to one of
// the session's lease periods: a lock grant, a leadership, a queue
// reservation. It has a deadline on the holder's own clock (its period's,
// or an earlier one of its own such as a reservation's visibility), and it
// is lost when that deadline passes, whatever the agent says or fails to
// say. Whoever acts under a hold should stop before Remaining reaches zero
// and stop at once on Lost.
type Hold struct {
	// Key is the hold's key in etcd.
	Key string
	// Token is the fencing token where the hold has one (a lock grant's
	// create revision, a leadership's revision); 0 otherwise.
	Token int64

	period  *LeasePeriod
	release func(ctx context.Context) error

	lost chan struct{}
	once sync.Once

	mu     sync.Mutex
	err    error
	frozen time.Duration // holdclock deadline once lost; 0 while held
	own    time.Duration // the hold's own deadline (holdclock), 0: none
}

// newHold makes a hold in period p. release gives it up at the agent.
func newHold(p *LeasePeriod, key string, token int64, release func(context.Context) error) *Hold {
	h := &Hold{Key: key, Token: token, period: p, release: release, lost: make(chan struct{})}
	go func() {
		select {
		case <-p.Done():
			h.lose(context.Cause(p.Context()))
		case <-h.lost:
		}
	}()
	return h
}

// Lost is closed when the hold is lost (or released).
func (h *Hold) Lost() <-chan struct{} { return h.lost }

// Err is nil while the hold holds, then why it ended (ErrLost wrapped, or
// ErrReleased).
func (h *Hold) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Period is the lease period the hold lives in; its context ends with it.
func (h *Hold) Period() *LeasePeriod { return h.period }

// Remaining is the time left before the hold's deadline on this process's
// clock: the earlier of its period's and its own. Once the hold is lost it
// no longer moves: a lost hold is not extended by later confirmations.
func (h *Hold) Remaining() time.Duration {
	now := holdclock.Now()
	left := h.period.Remaining()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.own != 0 {
		left = min(left, h.own-now)
	}
	if h.frozen != 0 {
		left = min(left, h.frozen-now)
	}
	return left
}

// Deadline is the hold's deadline as a wall-clock time, for display.
func (h *Hold) Deadline() time.Time { return time.Now().Add(h.Remaining()) }

// ErrReleased is a hold's Err after Release.
var ErrReleased = errors.New("released")

// Release gives the hold up at the agent. A lost hold is given up too
// (its key may outlive the loss, e.g. when only the agent's confirmation
// failed), and its error is not reported: it was no longer held.
func (h *Hold) Release(ctx context.Context) error {
	h.mu.Lock()
	wasLost := h.err != nil
	h.mu.Unlock()
	h.end(ErrReleased)
	if h.release == nil {
		return nil
	}
	if err := h.release(ctx); err != nil && !wasLost {
		return err
	}
	return nil
}

// lose ends the hold as lost, once. Its deadline stays where it was: the
// lease may live until then, and whoever acts under the hold may use the
// time to stop.
func (h *Hold) lose(cause error) { h.endLost(cause, false) }

// loseNow ends the hold as lost with no time left: what it held is gone
// from etcd (its key deleted, its leadership taken), so someone else may
// hold it already.
func (h *Hold) loseNow(cause error) { h.endLost(cause, true) }

func (h *Hold) endLost(cause error, now bool) {
	if cause == nil {
		cause = errors.New("no reason given")
	}
	if !errors.Is(cause, ErrLost) {
		cause = fmt.Errorf("%w: %w", ErrLost, cause)
	}
	h.endAt(cause, now)
}

func (h *Hold) end(err error) { h.endAt(err, false) }

func (h *Hold) endAt(err error, now bool) {
	h.once.Do(func() {
		left := h.Remaining()
		h.mu.Lock()
		h.err = err
		h.frozen = holdclock.Now() + left
		if left <= 0 || now {
			h.frozen = holdclock.Now() - 1
		}
		h.mu.Unlock()
		close(h.lost)
	})
}

// follow ends the hold on the agent's word: next blocks until the agent's
// stream about the hold ends, and says why and whether the hold is gone
// from etcd (so that someone else may hold it already). cancel ends that
// stream; it is called once the hold has ended either way.
func (h *Hold) follow(next func() (gone bool, why error), cancel context.CancelFunc) {
	go func() {
		defer cancel()
		type end struct {
			gone bool
			why  error
		}
		ended := make(chan end, 1)
		go func() {
			gone, why := next()
			ended <- end{gone, why}
		}()
		select {
		case e := <-ended:
			h.endLost(e.why, e.gone)
		case <-h.Lost():
		}
	}()
}

// giveUp loses a hold that could not be confirmed as it was granted,
// releases it, and returns why.
func (h *Hold) giveUp(ctx context.Context, why error) error {
	h.lose(why)
	_ = h.Release(ctx)
	return h.Err()
}

// context ends when the hold does (or cancel is called).
func (h *Hold) context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-h.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// limit sets the hold's own deadline: asked (holdclock) + d - Margin(d).
func (h *Hold) limit(asked, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.frozen == 0 {
		h.own = asked + d - Margin(d)
	}
}

// watchOwn loses the hold when its own deadline passes.
func (h *Hold) watchOwn() {
	ctx, cancel := h.context()
	defer cancel()
	for {
		h.mu.Lock()
		own := h.own
		h.mu.Unlock()
		if !holdclock.SleepUntil(ctx, own) {
			return
		}
		h.mu.Lock()
		moved := h.own > own
		h.mu.Unlock()
		if !moved {
			h.lose(errors.New("its own deadline passed before it was extended"))
			return
		}
	}
}
