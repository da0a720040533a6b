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

// TestQueueProgressExample runs the README's progress example as
// written, in bash, in an empty directory with ./beacon: an agent on
// 127.0.0.87, a worker whose CMD reports 10% and 60%, the listings that
// show them, and the ack that removes the report.
func TestQueueProgressExample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)<!-- e2e: TestQueueProgressExample -->\n```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md has no progress example block")
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
	cmd.Env = append(os.Environ(), "BEACON_AGENT=", "BEACON_TOKEN=", "BEACON_PROGRESS=")
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
			b, _ := os.ReadFile(filepath.Join(dir, "w1.log"))
			t.Logf("--- w1.log:\n%s", tail(string(b), 15))
		}
	})
	runErr := cmd.Wait()
	printed, _ := os.ReadFile(out.Name())
	if runErr != nil {
		t.Fatalf("the example failed: %v\n%s", runErr, printed)
	}
	text := string(printed)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^1 +w1 +\d+ +10% +"dumping db-1" +\d\S* +1$`),
		regexp.MustCompile(`"percent": 60,\s+"progress_message": "uploading"`),
		regexp.MustCompile(`(?m)^backups +0 +0 +0 +0 +0 +-$`),
		regexp.MustCompile(`beacon: progress: not inside a queue worker .*\nexit 2`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the example's output lacks %s:\n%s", want, text)
		}
	}
	if strings.Count(text, `"node": "w1"`) != 1 {
		t.Errorf("the JSON listing does not name the worker's node once:\n%s", text)
	}
}
