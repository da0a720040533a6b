package progressrelay

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A relay's directory is named for the process that made it,
// beacon-progress-<pid>-<random>. A worker killed with kill -9 cannot
// remove its own, so each relay that starts removes those of processes
// that no longer exist: at most maxSwept a start, so that a start stays
// quick whatever it finds. A pid reused since only delays the removal.

// dirPrefix starts every relay directory's name.
const dirPrefix = "beacon-progress-"

// maxSwept bounds the directories one start removes.
const maxSwept = 64

// dirPattern is the os.MkdirTemp pattern of this process's directories.
func dirPattern() string { return fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()) }

// sweep removes, under parent, the relay directories of processes that
// are gone, and reports how many it removed.
func sweep(parent string) int {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		if removed == maxSwept {
			break
		}
		pid, ok := ownerPid(e.Name())
		if !ok || !e.IsDir() || processExists(pid) {
			continue
		}
		if os.RemoveAll(filepath.Join(parent, e.Name())) == nil {
			removed++
		}
	}
	return removed
}

// ownerPid reads the pid in a relay directory's name.
func ownerPid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, dirPrefix)
	if !ok {
		return 0, false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	return pid, err == nil && pid > 0
}
