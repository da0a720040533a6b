package holdclock

import "time"

var start = time.Now()

// monotonic is Go's monotonic clock, for systems without a boot clock.
func monotonic() time.Duration { return time.Since(start) }
