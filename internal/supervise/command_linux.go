//go:build linux

package supervise

import (
	"errors"
	"os"
	"os/signal"
	"strconv"
	"strings"
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

// guardProcAttr puts the guard in a session of its own.
func guardProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }

// groupLives reports whether a process of group pgid is still running: a
// zombie is done (its parent, maybe a PID 1 that never reaps, may keep it
// listed for long), so /proc is read rather than kill(-pgid, 0).
func groupLives(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and ')'.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid && pid > 0 {
			return true
		}
	}
	return false
}
