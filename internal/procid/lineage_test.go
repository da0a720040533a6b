package procid

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// This process is its own; its child and grandchild are its descendants;
// its parent, init, and a process it started that was handed to init (its
// parent exited) are not.
func TestIsOrDescends(t *testing.T) {
	self := os.Getpid()
	// sh (a child) runs sleep (a grandchild) and prints its pid.
	child := exec.Command("sh", "-c", "sleep 60 & echo $!; wait")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	grandchild := readPid(t, out)
	defer func() { _ = syscall.Kill(grandchild, syscall.SIGKILL) }()

	// An orphan: sh exits at once, its sleep is handed to init.
	orphanOut, err := exec.Command("sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(orphanOut)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(orphan, syscall.SIGKILL) }()

	for _, c := range []struct {
		what     string
		pid, anc int
		want     bool
	}{
		{"itself", self, self, true},
		{"its child", child.Process.Pid, self, true},
		{"its grandchild", grandchild, self, true},
		{"its parent", os.Getppid(), self, false},
		{"init", 1, self, false},
		{"an orphan it started", orphan, self, false},
		{"a pid that does not run", 1 << 22, self, false},
	} {
		if got := IsOrDescends(c.pid, c.anc); got != c.want {
			t.Errorf("%s (pid %d): IsOrDescends = %v, want %v", c.what, c.pid, got, c.want)
		}
	}
}

func readPid(t *testing.T, r interface{ Read([]byte) (int, error) }) int {
	t.Helper()
	buf := make([]byte, 32)
	n, err := r.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
