//go:build !linux

package holdclock

import "time"

func now() time.Duration { return monotonic() }
