//go:build !linux

package supervise

import "syscall"

// sysProcAttr: a process group of its own. Without PR_SET_PDEATHSIG, only
// the guard ends the program when beacon dies.
func sysProcAttr() (*syscall.SysProcAttr, bool) {
	return &syscall.SysProcAttr{Setpgid: true}, false
}

func restoreForeground() {}
