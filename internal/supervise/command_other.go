//go:build !linux

package supervise

import "syscall"

// sysProcAttr: a process group of its own. Without PR_SET_PDEATHSIG, only
// the guard ends the program when beacon dies.
func sysProcAttr() (*syscall.SysProcAttr, bool) {
	return &syscall.SysProcAttr{Setpgid: true}, false
}

func restoreForeground() {}

// guardProcAttr puts the guard in a session of its own.
func guardProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// groupLives reports whether a process of group pgid may still run.
func groupLives(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
