// Package holdclock is the clock a holder measures its deadlines on. It
// counts time the whole machine spent suspended (CLOCK_BOOTTIME on Linux),
// unlike Go's monotonic clock, so that a hold confirmed before a suspend
// is seen as expired on resume: the cluster's leases went on expiring
// meanwhile. A paused process (SIGSTOP) sees the same with either clock.
package holdclock

import (
	"context"
	"time"
)

// Now is the time since an arbitrary fixed point, suspends included.
func Now() time.Duration { return now() }

// SystemWide reports whether Now reads the same clock in every process of
// the machine (CLOCK_BOOTTIME on Linux), so that one process can hand a
// deadline to another.
func SystemWide() bool { return systemWide }

// poll bounds how long a sleeping deadline watch goes without reading
// the clock: Go's timers run on the monotonic clock, which stands still
// during a suspend, so a deadline that passed during one is noticed at
// most this long after the resume.
const poll = 100 * time.Millisecond

// SleepUntil waits until the clock reads at least t, or ctx ends (false).
func SleepUntil(ctx context.Context, t time.Duration) bool {
	for {
		left := t - Now()
		if left <= 0 {
			return true
		}
		timer := time.NewTimer(min(left, poll))
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}
