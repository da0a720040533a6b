//go:build linux

package supervise

import (
	"os/signal"
	"syscall"
	"unsafe"
)

// sysProcAttr puts the program in a process group of its own and has the
// kernel kill it when its parent dies. When beacon runs in the terminal's
// foreground, the program's group becomes the foreground group, so that
// it can read the terminal (a background group reading it would be
// stopped) and gets the terminal's ^C itself.
func sysProcAttr() (*syscall.SysProcAttr, bool) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if fg, err := foregroundGroup(0); err == nil && fg == syscall.Getpgrp() {
		attr.Foreground, attr.Ctty = true, 0
		return attr, true
	}
	return attr, false
}

// foregroundGroup is tcgetpgrp(fd); an error when fd is not a terminal.
func foregroundGroup(fd int) (int, error) {
	var pgrp int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp))); errno != 0 {
		return 0, errno
	}
	return int(pgrp), nil
}

// restoreForeground makes beacon's group the terminal's foreground group
// again, after the program's. beacon is in the background meanwhile, so
// SIGTTOU must be ignored for the call.
func restoreForeground() {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	pgrp := int32(syscall.Getpgrp())
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&pgrp)))
}
