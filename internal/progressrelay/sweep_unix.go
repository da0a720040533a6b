//go:build unix

package progressrelay

import (
	"errors"
	"syscall"
)

// processExists reports whether pid names a live process; a process of
// another user (EPERM) exists.
func processExists(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
