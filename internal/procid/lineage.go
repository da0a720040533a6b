package procid

import (
	"os"
	"strconv"
	"strings"
)

// maxLineage bounds the walk up a process's parents: process trees are
// far shallower, and a walk must end even if /proc changes under it.
const maxLineage = 1024

// IsOrDescends reports whether pid is ancestor or one of its descendants
// on this host now, by the parent links in /proc. A process whose parent
// exited has been handed to init (or a subreaper) and is no longer
// counted as the exited process's descendant.
func IsOrDescends(pid, ancestor int) bool {
	if pid <= 0 || ancestor <= 0 {
		return false
	}
	for range maxLineage {
		if pid == ancestor {
			return true
		}
		if pid <= 1 {
			return false
		}
		next, ok := parent(pid)
		if !ok {
			return false
		}
		pid = next
	}
	return false
}

// parent is pid's parent's pid; ok is false if pid is gone.
func parent(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}
