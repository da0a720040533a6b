//go:build !linux

package holdclock

import "time"

const systemWide = false

func now() time.Duration { return monotonic() }
