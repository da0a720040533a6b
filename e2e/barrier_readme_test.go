package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestBarrierReadme runs the README's barrier example as written, in
// bash, in an empty directory with ./beacon at hand: an agent on
// 127.0.0.51, three participants that start together and wait for each
// other to finish, and a participant that times out naming who is there.
func TestBarrierReadme(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)<!-- e2e: TestBarrierReadme -->\n```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md has no barrier example block")
	}
	dir := t.TempDir()
	if err := os.Symlink(testcluster.Binary(t), filepath.Join(dir, "beacon")); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", string(block[1]))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BEACON_AGENT=", "BEACON_TOKEN=")
	// A file, not a pipe: the agent the script leaves running keeps its
	// descriptors. Its own process group, so that the agent goes with it.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "data", "b1.log"))
			t.Logf("--- b1.log:\n%s", tail(string(b), 15))
		}
	})
	runErr := cmd.Wait()
	b, _ := os.ReadFile(out.Name())
	printed := string(b)
	if runErr != nil {
		t.Fatalf("the example failed: %v\n%s", runErr, printed)
	}
	lines := strings.Split(strings.TrimSpace(printed), "\n")
	pos := map[string]int{}
	for i, l := range lines {
		pos[l] = i + 1
	}
	for _, w := range []string{"1", "2", "3"} {
		for _, l := range []string{"worker " + w + " starts", "worker " + w + " done"} {
			if pos[l] == 0 {
				t.Fatalf("the example's output lacks %q:\n%s", l, printed)
			}
		}
	}
	if pos["all three are done"] < pos["worker 3 done"] {
		t.Fatalf("the workers returned before the slowest was done:\n%s", printed)
	}
	timeout := regexp.MustCompile(`(?m)^beacon: deadline exceeded: barrier "nightly": timed out after 1s waiting for 1 of 2; present: b1 \(pid \d+\)$`)
	if !timeout.MatchString(printed) {
		t.Fatalf("the example's output lacks the timeout line:\n%s", printed)
	}
}
