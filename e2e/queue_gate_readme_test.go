package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestQueueGateReadme runs README.md's gated-queue examples as
// written, in bash, with beacon on the PATH and BEACON_AGENT naming a real
// agent, and checks what each prints, in order.
func TestQueueGateReadme(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)<!-- e2e: TestQueueGateReadme -->\n```sh\n(.*?)```").FindAllSubmatch(readme, -1)
	want := [][]string{
		{"nothing yet: the gate is closed", "compile a.c", "compile b.c", "compile c.c", "link"},
		{"migrate schema", "serve shard 1", "serve shard 2"},
		{"nothing yet: the gate is closed", "deploy web", "open", "key release/go=yes"},
	}
	if len(blocks) != len(want) {
		t.Fatalf("README.md has %d gated-queue examples, want %d", len(blocks), len(want))
	}
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	bin := t.TempDir()
	if err := os.Symlink(testcluster.Binary(t), filepath.Join(bin, "beacon")); err != nil {
		t.Fatal(err)
	}
	for i, block := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-e", "-c", string(block[1]))
		cmd.Env = append(os.Environ(), "BEACON_AGENT="+a.APIAddr, "BEACON_TOKEN=", "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("example %d failed: %v\n%s", i+1, err, out)
		}
		rest := string(out)
		for _, w := range want[i] {
			j := strings.Index(rest, w)
			if j < 0 {
				t.Fatalf("example %d: %q missing, or out of order, in:\n%s", i+1, w, out)
			}
			rest = rest[j+len(w):]
		}
	}
}
