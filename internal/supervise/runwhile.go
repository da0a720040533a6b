package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/internal/holdclock"
)

// Hold is what CMD runs under: a lock grant, a leadership, a queue
// reservation (client.Hold satisfies it).
type Hold interface {
	// Lost is closed when the hold is lost (or released).
	Lost() <-chan struct{}
	// Err says why it was lost.
	Err() error
	// Remaining is the time left before the hold's deadline, on the
	// holder's own clock; zero or less once it has passed.
	Remaining() time.Duration
}

// RunOptions configure RunWhile.
type RunOptions struct {
	Args      []string  // CMD and its arguments
	Env       []string  // CMD's whole environment
	Stdin     io.Reader // CMD's stdin; default this process's
	GuardArgs []string  // how to run the guard (see CommandOptions)
	// Grace is CMD's time between SIGTERM and SIGKILL when the hold ends:
	// SIGTERM goes at deadline - Grace, SIGKILL at the deadline, so CMD has
	// stopped before anyone else can be granted what it held. It must be
	// smaller than the hold's TTL.
	Grace time.Duration
	// Signals are passed on to CMD's group as they come; after a
	// terminating one (SIGINT, SIGTERM), CMD is killed if it still runs
	// Grace later.
	Signals <-chan os.Signal
}

// Result is how CMD ended.
type Result struct {
	// Code is CMD's exit code, or 128 + the signal that killed it.
	Code int
	// Lost is why the hold ended while CMD ran (CMD was stopped for it);
	// nil if CMD exited on its own, or on a signal passed on.
	Lost error
	// Signal is the first terminating signal (SIGINT, SIGTERM) passed on
	// to CMD, if any.
	Signal os.Signal
}

// ErrDeadline: the hold's deadline came without a confirmation.
var ErrDeadline = errors.New("the hold was not confirmed in time")

// tick bounds how long RunWhile goes without looking at the hold's
// deadline, which confirmations move.
const tick = 50 * time.Millisecond

// RunWhile runs CMD while hold holds. If the hold is lost, or its deadline
// comes within Grace, CMD's process group gets SIGTERM; at the deadline, or
// Grace after the SIGTERM if that comes first, it gets SIGKILL. After a pause of this process (SIGSTOP, or a suspended
// host) the deadline has passed on resume and CMD is killed at once.
// Signals are passed on. RunWhile returns when CMD has exited and whatever
// it left in its group is killed; an error only if CMD could not start or
// the hold could not cover it (lost, or less than Grace left).
func RunWhile(ctx context.Context, hold Hold, o RunOptions) (Result, error) {
	select {
	case <-hold.Lost():
		return Result{}, fmt.Errorf("lost before it started: %w", hold.Err())
	default:
	}
	if left := hold.Remaining(); left <= o.Grace {
		return Result{}, fmt.Errorf("%w: %s left, less than the grace %s", ErrDeadline, left.Round(time.Millisecond), o.Grace)
	}
	c, err := StartCommand(CommandOptions{Args: o.Args, Env: o.Env, Stdin: o.Stdin, GuardArgs: o.GuardArgs})
	if err != nil {
		return Result{}, err
	}
	var res Result
	termed, killed := false, false
	var graceEnd time.Duration // on holdclock: SIGKILL then at the latest
	stop := func(why error, kill bool) {
		if res.Lost == nil {
			res.Lost = why
		}
		if !termed {
			termed = true
			graceEnd = holdclock.Now() + o.Grace
			c.Signal(syscall.SIGTERM)
		}
		if kill && !killed {
			killed = true
			c.Kill()
		}
	}
	var toldGuard time.Duration // the kill deadline the guard has
	lost := hold.Lost()
	ctxDone := ctx.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.Done():
			res.Code = c.Finish()
			return res, nil
		case sig := <-o.Signals:
			if s, ok := sig.(syscall.Signal); ok {
				c.Signal(s)
			}
			if res.Signal == nil && terminating(sig) {
				// beacon is asked to stop: CMD has the grace to follow.
				res.Signal = sig
				if !termed {
					termed = true
					graceEnd = holdclock.Now() + o.Grace
				}
			}
		case <-lost:
			lost = nil
			stop(hold.Err(), false)
		case <-ctxDone:
			ctxDone = nil
			stop(context.Cause(ctx), false)
		case <-t.C:
		}
		// Whatever woke us, the deadline decides the next step.
		left := hold.Remaining()
		switch {
		case left <= 0:
			stop(fmt.Errorf("%w: its deadline passed", ErrDeadline), true)
		case left <= o.Grace:
			stop(fmt.Errorf("%w: %s left before its deadline, within the grace %s", ErrDeadline, left.Round(time.Millisecond), o.Grace), false)
		}
		now := holdclock.Now()
		if termed && !killed && graceEnd <= now {
			killed = true
			c.Kill()
		}
		// The guard kills CMD at the deadline should this process be
		// paused and miss it; tell it when the deadline moves.
		killAt := now + left
		if termed {
			killAt = min(killAt, graceEnd)
		}
		if !killed && (killAt-toldGuard > 10*time.Millisecond || killAt < toldGuard) {
			c.SetKillDeadline(killAt)
			toldGuard = killAt
		}
		next := tick
		if !termed {
			next = min(next, left-o.Grace)
		}
		if !killed {
			next = min(next, left)
			if termed {
				next = min(next, graceEnd-now)
			}
		}
		t.Reset(max(next, time.Millisecond))
	}
}

// terminating reports whether sig, passed on, asks CMD to end: SIGINT or
// SIGTERM. (SIGHUP and SIGQUIT pass on too, but a CMD may take SIGHUP to
// reload and go on, so they start no grace.)
func terminating(sig os.Signal) bool {
	return sig == syscall.SIGINT || sig == syscall.SIGTERM
}
