//go:build linux

package holdclock

import (
	"time"

	"golang.org/x/sys/unix"
)

const systemWide = true

func now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return monotonic()
	}
	return time.Duration(ts.Nano())
}
