// Package procid names a process across the processes of one host: its
// host's boot id, its pid and its start time, so that an agent can tell
// whether a client whose connection broke has died or lives on.
package procid

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// BootID is this host's boot id, "" where there is none.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Self names this process; nil where it cannot.
func Self() *beaconpb.ClientProcess { return Of(os.Getpid()) }

// Of names the process pid of this host; nil where it cannot (it does
// not run).
func Of(pid int) *beaconpb.ClientProcess {
	boot := BootID()
	start, state := stat(pid)
	if boot == "" || state == "" {
		return nil
	}
	return &beaconpb.ClientProcess{BootId: boot, Pid: int64(pid), StartTime: start}
}

// stat reads a process's start time and state; state "" if it is gone.
func stat(pid int) (start uint64, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ... starttime is field 22; comm may hold
	// spaces and ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 20 {
		return 0, ""
	}
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return start, f[0]
}

// alive reports whether p runs on this host: known is false when p is
// not of this host (or not named), and nothing can be said.
func alive(p *beaconpb.ClientProcess, boot string) (known, running bool) {
	if p == nil || p.Pid <= 0 || boot == "" || p.BootId != boot {
		return false, false
	}
	start, state := stat(int(p.Pid))
	if state == "" || start != p.StartTime {
		return true, false // gone, or its pid taken by another
	}
	return true, state != "Z" && state != "X"
}

// Runs reports whether p names a process that runs on this host (boot id
// boot) now.
func Runs(p *beaconpb.ClientProcess, boot string) bool {
	known, running := alive(p, boot)
	return known && running
}

// WaitGone waits up to d for p to be gone from this host (boot id boot):
// a connection closes while its process exits, a moment before the
// process is a zombie. It reports whether p is known to be gone.
func WaitGone(p *beaconpb.ClientProcess, boot string, d time.Duration) bool {
	for end := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		known, running := alive(p, boot)
		if !known {
			return false
		}
		if !running {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}
